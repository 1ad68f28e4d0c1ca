"""Peak memory of the `mask` stage (`ifguide mask SCORES`) as the corpus grows, for a score storage.

For each size (tokens) a workspace gets a synthetic dataset artifact (rows of `--seq-len` tokens, random
lengths: the attention mask counts) and a scores artifact over it in `--storage` (fp32, bf16 or fp16; random
normal scores, a few heavy rows), both written a block at a time. Then the mask stage runs in its own process
through `create_mask_artifact`, the function behind the CLI, and prints its wall time and its peak resident
memory (VmHWM, which includes the pages of memory-mapped files it still had mapped) with the process's memory
before the stage (imports, the workspace) subtracted. Last, the peak's growth per token between the smallest
and the largest size: what memory the stage needs per token of corpus.

    python benchmarks/mask_stage.py                                   # 6.25M and 50M tokens, bf16
    python benchmarks/mask_stage.py --sizes 1e6 8e6 --storage fp32
    PYTHONPATH=/path/to/other/checkout python benchmarks/mask_stage.py   # the same figures for other code

The code measured is the `ifguide_cli` Python imports (PYTHONPATH), so two checkouts compare side by side.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STORAGE = {"fp32": "F32", "bf16": "BF16", "fp16": "F16"}
BLOCK_ROWS = 2048


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def make_workspace(root: Path, tokens: int, seq_len: int, storage: str) -> str:
    """A dataset artifact and a scores artifact of `tokens` scores over it (written a block of rows at a time);
    returns the scores id."""
    import numpy as np

    from ifguide_cli.core.masking.scorefile import open_tensor, preallocate_safetensors
    from ifguide_cli.core.store.artifact_files import CORPUS_FILE, SCORES_FILE
    from ifguide_cli.core.store.workspace import Workspace

    docs = max(1, tokens // seq_len)
    rng = np.random.default_rng(0)
    ws = Workspace(root)

    def fill(path: Path, key: str, block_of) -> None:
        for r0 in range(0, docs, BLOCK_ROWS):
            r1 = min(docs, r0 + BLOCK_ROWS)
            out = open_tensor(path, key)
            out[r0:r1] = block_of(r1 - r0)
            out.flush()
            del out

    def attention(n: int):
        lengths = rng.integers(seq_len // 4, seq_len + 1, n)
        return (np.arange(seq_len)[None, :] < lengths[:, None]).astype(np.uint8)

    def scores(n: int):
        block = rng.standard_normal((n, seq_len), dtype=np.float32)
        block[rng.random(n) < 0.02] *= 3.0
        return (block.view(np.uint32) >> 16).astype(np.uint16) if storage == "bf16" else block

    def dataset(ctx):
        path = ctx.staging / CORPUS_FILE
        preallocate_safetensors(path, {"input_ids": ("I32", (docs, seq_len)), "attention_mask": ("U8", (docs, seq_len))})
        fill(path, "attention_mask", attention)
        return {}

    ds = ws.create("datasets", {"benchmark": "mask_stage", "tokens": tokens, "seq_len": seq_len}, [], dataset)[0]

    def build(ctx):
        path = ctx.staging / SCORES_FILE
        preallocate_safetensors(path, {"scores": (STORAGE[storage], (docs, seq_len))})
        fill(path, "scores", scores)
        return {}

    return ws.create("scores", {"dataset": ds.id, "storage": storage}, [ds.id], build)[0].id


def run_child(root: Path, scores_id: str, budget: float) -> dict:
    """The mask stage in this process: its seconds, peak RSS and the RSS before it (bytes)."""
    from ifguide_cli.core.masking import MaskConfig, create_mask_artifact
    from ifguide_cli.core.store.workspace import Workspace

    ws = Workspace(root)
    before = _status_kb("VmRSS") * 1024
    start = time.perf_counter()
    art = create_mask_artifact(ws, scores_id, MaskConfig(max_tokens=int(budget))).artifact
    seconds = time.perf_counter() - start
    return {"seconds": round(seconds, 2), "peak_rss": _status_kb("VmHWM") * 1024, "rss_before": before,
            "tokens_selected": art.summary["tokens_selected"], "mask": art.id}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", type=float, default=[6.25e6, 5e7], help="token counts (rows × seq-len)")
    ap.add_argument("--storage", choices=sorted(STORAGE), default="bf16")
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--budget", type=float, default=0.01, help="the mask's budget, a share of the tokens")
    ap.add_argument("--_child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child:
        root, scores_id, budget = args._child
        print(json.dumps(run_child(Path(root), scores_id, float(budget))))
        return
    rows = []
    for size in args.sizes:
        tokens = (int(size) // args.seq_len) * args.seq_len
        with tempfile.TemporaryDirectory(prefix="mask-stage-") as tmp:
            scores_id = make_workspace(Path(tmp), tokens, args.seq_len, args.storage)
            cmd = [sys.executable, __file__, "--_child", tmp, scores_id, str(args.budget * tokens)]
            r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
        r.update(tokens=tokens, stage_peak=r["peak_rss"] - r["rss_before"])
        rows.append(r)
        print(f"{tokens:>13,} tokens {args.storage}: {r['seconds']:>7.2f} s, peak RSS {r['peak_rss'] / 2**20:>8.1f} MB, "
              f"above the process before the stage {r['stage_peak'] / 2**20:>8.1f} MB "
              f"({r['stage_peak'] / tokens:.3f} B/token), {r['tokens_selected']:,} tokens selected", flush=True)
    if len(rows) > 1:
        lo, hi = rows[0], rows[-1]
        growth = (hi["peak_rss"] - lo["peak_rss"]) / (hi["tokens"] - lo["tokens"])
        print(f"peak RSS growth per token ({lo['tokens']:,} → {hi['tokens']:,}): {growth:.3f} B/token")


if __name__ == "__main__":
    main()
