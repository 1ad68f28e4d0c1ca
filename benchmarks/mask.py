"""Benchmark `ifguide mask` selection (Alg. 1) on synthetic float32 scores of shape (docs, 2048).

Prints, per size: seconds, tokens/s, peak RSS and peak RSS over the size of the score tensor.
Each size runs in its own process so the peak (ru_maxrss) belongs to that size alone.

    python benchmarks/mask.py                       # 10M, 50M, 200M tokens
    python benchmarks/mask.py --sizes 1e9           # 1B tokens (4 GB of scores; needs ~6 GB RAM)
    python benchmarks/mask.py --sizes 2e8 --mmap    # scores memory-mapped from a .npy file
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

SEQ_LEN = 2048


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _one(tokens: int, mmap: bool, threshold: float, window: int, max_tokens: int) -> dict:
    import numpy as np

    from ifguide_cli.core.masking import MaskConfig, load_scores, select_toxic_tokens

    docs = max(1, tokens // SEQ_LEN)
    rng = np.random.default_rng(0)
    tmp = None
    rows = max(1, (1 << 22) // SEQ_LEN)

    def blocks():
        for r0 in range(0, docs, rows):
            block = rng.standard_normal((min(rows, docs - r0), SEQ_LEN), dtype=np.float32)
            # ~2% planted documents with a heavy tail, so the ranking has something to find
            block[rng.random(block.shape[0]) < 0.02] *= 3.0
            yield r0, block

    if mmap:
        # written with plain file writes (not through a mapping), so only what the selection touches counts
        with tempfile.NamedTemporaryFile(suffix=".npy", delete=False) as tmp:
            np.lib.format.write_array_header_1_0(tmp, {"descr": "<f4", "fortran_order": False, "shape": (docs, SEQ_LEN)})
            for _, block in blocks():
                block.tofile(tmp)
        scores = load_scores(tmp.name, check_finite_values=False)
    else:
        scores = np.empty((docs, SEQ_LEN), dtype=np.float32)
        for r0, block in blocks():
            scores[r0:r0 + block.shape[0]] = block
        del block
    baseline = _rss_bytes() - (0 if mmap else scores.nbytes)
    t0 = time.perf_counter()
    res = select_toxic_tokens(scores, MaskConfig(threshold, window, max_tokens))
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if tmp is not None:
        os.unlink(tmp.name)
    size = docs * SEQ_LEN * 4
    return {
        "tokens": docs * SEQ_LEN,
        "mmap": mmap,
        "seconds": round(seconds, 2),
        "tokens_per_s": round(docs * SEQ_LEN / seconds),
        "score_bytes": size,
        "peak_rss_bytes": peak,
        "peak_over_scores": round(peak / size, 3),
        "peak_minus_baseline_over_scores": round((peak - baseline) / size, 3),
        "tokens_selected": res.tokens_selected,
        "documents_selected": res.documents_selected,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", type=float, default=[1e7, 5e7, 2e8], help="token counts")
    ap.add_argument("--mmap", action="store_true", help="memory-map the scores from a .npy file")
    ap.add_argument("--threshold", type=float, default=0.99)
    ap.add_argument("--window", type=int, default=1)
    ap.add_argument("--max-tokens", type=int, default=20_000_000)
    ap.add_argument("--json", action="store_true", help="one JSON line per size")
    ap.add_argument("--_child", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child is not None:
        print(json.dumps(_one(int(args._child), args.mmap, args.threshold, args.window, args.max_tokens)))
        return
    if not args.json:
        print(f"{'tokens':>14} {'mmap':>5} {'seconds':>8} {'tokens/s':>12} {'peak RSS':>10} {'peak/scores':>12} {'(peak-base)/scores':>19}")
    for size in args.sizes:
        cmd = [sys.executable, __file__, "--_child", str(size), "--threshold", str(args.threshold),
               "--window", str(args.window), "--max-tokens", str(args.max_tokens)] + (["--mmap"] if args.mmap else [])
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        r = json.loads(out)
        if args.json:
            print(out)
        else:
            print(f"{r['tokens']:>14,} {r['mmap']!s:>5} {r['seconds']:>8.2f} {r['tokens_per_s']:>12,} "
                  f"{r['peak_rss_bytes'] / 2**30:>9.2f}G {r['peak_over_scores']:>12.3f} {r['peak_minus_baseline_over_scores']:>19.3f}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
