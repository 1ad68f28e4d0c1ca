"""Wall time and peak memory of data → factors → scores → mask as the corpus grows (the tiny model, CPU).

For each corpus size (documents) a synthetic corpus is written (the packaged tiny corpus's documents, repeated
with a running number so that no two are equal), and each stage runs in its own process through the same
functions as the CLI, so that its peak RSS (VmHWM) is that stage's alone. Factors are fit on the first
`--factor-rows` rows at every size (the fit is a fixed sample, as `--max-examples` makes it), scores and mask
cover every row. The model is the tiny GPT-NeoX with its seeded random weights (memory and time do not
depend on the weights). Prints one table row per size and stage, the growth of each stage's peak RSS per
token between the smallest and the largest size, and the goal of issue 23 for `scores`:

    peak RSS at ≥ 8× the tokens ≤ 1.2 × the smallest run's + the score tensor; wall time ≤ 10×.

Peak RSS (VmHWM) counts the pages of the memory-mapped files a stage touched: the dataset it reads (int32 ids and
a uint8 mask, 5 B/token) and the score file it writes (4 B/token), which the issue allows ("apart from
memory-mapped outputs"), and the shared libraries. So each stage's anonymous memory (RssAnon: heap, tensors) is
sampled too, every 10 ms in a thread of the stage's process, with the file-backed pages (RssFile); the peak of
the samples can miss a peak shorter than that. The goal is printed both ways: on VmHWM (mapped files included:
stricter), and on the sampled anonymous peak, the honest reading of "independent of corpus size apart from
memory-mapped outputs".

Last, the agreement of the largest size's mask (Alg. 1, the tiny preset's p/w and a 2% budget) when the
scores are stored in bf16 or fp16 instead of fp32 (the `--storage` choices): Jaccard of the selected tokens.

    python benchmarks/scale.py                          # 1,000 / 2,828 / 8,000 documents (72-token rows)
    python benchmarks/scale.py --sizes 500 4000         # a quick pair
    python benchmarks/scale.py --sizes 5000 14142 40000 # the sizes of the issue's table
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

STAGES = ("data", "factors", "scores", "mask")
QUERIES = ("tiny-queries-toxic", "tiny-queries-safe")


def write_corpus(path: Path, docs: int) -> None:
    """`docs` documents of the packaged tiny corpus (with its planted labels), each made unique by a number."""
    from ifguide_cli.core.registry import tiny_asset

    source = [json.loads(line) for line in tiny_asset("corpus.jsonl").read_text().splitlines() if line.strip()]
    with open(path, "w") as fh:
        for i in range(docs):
            doc = source[i % len(source)]
            fh.write(json.dumps({"text": f"{doc['text']} Note {i}.", "planted_toxic": doc["planted_toxic"]}) + "\n")


def run_stage(stage: str, workspace: Path, corpus: Path, args) -> dict:
    """One stage in this process (the child): returns its artifact id, seconds and tokens."""
    from ifguide_cli.core.store.workspace import Workspace

    ws = Workspace(workspace)
    start = time.perf_counter()
    if stage == "data":
        from ifguide_cli.core.data import resolve_corpus
        from ifguide_cli.core.models import resolve_model

        art = resolve_corpus(ws, str(corpus), resolve_model("tiny", ws), args.seq_len, layout="documents",
                             overflow="truncate").artifact
        return {"id": art.id, "seconds": time.perf_counter() - start, "tokens": art.summary["tokens"]}  # the mask's ones
    elif stage == "factors":
        from ifguide_cli.core.influence import FactorsConfig, fit_factors

        cfg = FactorsConfig(allow_random=True, max_examples=args.factor_rows, seq_len=args.seq_len)
        art = fit_factors(ws, "tiny", ws.resolve("latest", "datasets").id, cfg).artifact
    elif stage == "scores":
        from ifguide_cli.core.influence import ScoresConfig, compute_scores

        cfg = ScoresConfig(storage=args.storage, partitions=args.partitions)
        art = compute_scores(ws, ws.resolve("latest", "factors").id, *QUERIES, cfg).artifact
    else:
        from ifguide_cli.core.masking import MaskConfig, create_mask_artifact

        scores = ws.resolve("latest", "scores")
        art = create_mask_artifact(ws, scores.id, MaskConfig(max_tokens=max(1, scores.summary["tokens"] // 50))).artifact
    return {"id": art.id, "seconds": time.perf_counter() - start}


def peak_rss_mb() -> float:
    """This process's peak resident memory since it was started (exec'd), in MiB.

    /proc's VmHWM belongs to the process's own memory map, which exec replaces; `ru_maxrss` survives exec and
    would report the parent's resident size at fork when that is larger (the parent has imported torch)."""
    hwm = _status_mb("VmHWM")
    if hwm:
        return hwm["VmHWM"]
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: KiB on Linux, bytes on macOS


def _status_mb(*keys: str) -> dict[str, float]:
    """Fields of /proc/self/status in MiB (empty where there is no /proc)."""
    path = Path("/proc/self/status")
    if not path.is_file():
        return {}
    fields = dict(line.split(":", 1) for line in path.read_text().splitlines() if ":" in line)
    return {key: int(fields[key].split()[0]) / 1024 for key in keys if key in fields}


class PeakSampler:
    """The peaks of anonymous (RssAnon) and file-backed (RssFile) resident memory, sampled every `interval` s."""

    def __init__(self, interval: float = 0.01):
        self.interval, self.peaks, self._stop = interval, {"RssAnon": 0.0, "RssFile": 0.0}, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        for key, mb in _status_mb(*self.peaks).items():
            self.peaks[key] = max(self.peaks[key], mb)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> PeakSampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def child(args) -> None:
    with PeakSampler() as sampler:
        out = run_stage(args.stage, Path(args.workspace), Path(args.corpus), args)
    out.update(peak_rss_mb=peak_rss_mb(), peak_anon_mb=sampler.peaks["RssAnon"], peak_file_mb=sampler.peaks["RssFile"])
    print(json.dumps(out))


def measure(docs: int, root: Path, args) -> list[dict]:
    """Every stage of one corpus size, each in a fresh process."""
    folder = root / f"docs{docs}"
    folder.mkdir(parents=True, exist_ok=True)
    corpus = folder / "corpus.jsonl"
    write_corpus(corpus, docs)
    rows = []
    for stage in STAGES:
        cmd = [sys.executable, __file__, "--_stage", stage, "--_workspace", str(folder / "ws"), "--_corpus", str(corpus),
               "--seq-len", str(args.seq_len), "--factor-rows", str(args.factor_rows), "--storage", args.storage]
        if args.partitions:
            cmd += ["--partitions", str(args.partitions)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.exit(f"{stage} at {docs} documents failed:\n{done.stderr[-3000:]}")
        rows.append({"docs": docs, "stage": stage, **json.loads(done.stdout.strip().splitlines()[-1])})
    for row in rows:
        row["tokens"] = rows[0]["tokens"]  # the data stage counts them
    return rows


def growth(rows: list[dict], key: str = "peak_rss_mb") -> dict[str, float]:
    """Bytes of `key` (a peak in MiB) per token between the smallest and the largest size, per stage."""
    out = {}
    for stage in STAGES:
        mine = sorted((r for r in rows if r["stage"] == stage), key=lambda r: r["tokens"])
        lo, hi = mine[0], mine[-1]
        out[stage] = (hi[key] - lo[key]) * 2**20 / max(1, hi["tokens"] - lo["tokens"])
    return out


def goal(rows: list[dict], key: str = "peak_rss_mb") -> dict:
    """Issue 23's goal for `scores` on the peak `key`, smallest vs largest size (the score tensor: rows × seq_len × 4
    bytes)."""
    mine = sorted((r for r in rows if r["stage"] == "scores"), key=lambda r: r["tokens"])
    lo, hi = mine[0], mine[-1]
    tensor_mb = hi["docs_rows"] * hi["seq_len"] * 4 / 2**20
    limit = 1.2 * lo[key] + tensor_mb
    return {"token_ratio": hi["tokens"] / lo["tokens"], "rss_limit_mb": limit, "rss_mb": hi[key],
            "rss_ok": hi[key] <= limit, "time_ratio": hi["seconds"] / lo["seconds"],
            "time_ok": hi["seconds"] / lo["seconds"] <= 10}


def storage_agreement(workspace: Path) -> dict[str, float]:
    """Jaccard of the tokens Alg. 1 selects from the fp32 scores and from the same scores rounded to bf16 / fp16."""
    import numpy as np
    import torch

    from ifguide_cli.core.influence.blocks import encode
    from ifguide_cli.core.masking import MaskConfig, select_toxic_tokens
    from ifguide_cli.core.masking.scorefile import bf16_to_float32, load_scores
    from ifguide_cli.core.masking.stage import resolve_mask_source
    from ifguide_cli.core.store.workspace import Workspace

    ws = Workspace(workspace)
    art = ws.resolve("latest", "scores")
    src = resolve_mask_source(ws, art.id)
    fp32 = np.asarray(load_scores(src.scores_file))
    config = MaskConfig(max_tokens=max(1, art.summary["tokens"] // 50))
    base = select_toxic_tokens(fp32, config, src.valid).mask
    out = {}
    for storage in ("bf16", "fp16"):
        stored = encode(torch.from_numpy(fp32), storage)
        widened = bf16_to_float32(stored) if storage == "bf16" else stored
        mask = select_toxic_tokens(widened, config, src.valid).mask
        out[storage] = float((mask & base).sum() / max(1, (mask | base).sum()))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", type=int, default=[1000, 2828, 8000], help="corpus sizes in documents")
    ap.add_argument("--seq-len", type=int, default=72, help="tokens per row")
    ap.add_argument("--factor-rows", type=int, default=500, help="rows the factors are fit on (every size)")
    ap.add_argument("--storage", default="fp32", choices=("fp32", "bf16", "fp16"))
    ap.add_argument("--partitions", type=int, default=None, help="scores blocks (default: the stage's own)")
    ap.add_argument("--workdir", help="keep the workspaces here (default: a temporary folder)")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON lines too")
    ap.add_argument("--_stage", dest="stage", help=argparse.SUPPRESS)
    ap.add_argument("--_workspace", dest="workspace", help=argparse.SUPPRESS)
    ap.add_argument("--_corpus", dest="corpus", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.stage:
        child(args)
        return
    with tempfile.TemporaryDirectory(prefix="ifguide-scale-") as tmp:
        root = Path(args.workdir or tmp)
        rows = []
        for docs in sorted(args.sizes):
            rows += measure(docs, root, args)
            for row in rows[-len(STAGES):]:
                row.update(docs_rows=docs, seq_len=args.seq_len)
                print(f"{row['docs']:>8,} docs {row['tokens']:>11,} tokens  {row['stage']:<8} {row['seconds']:>8.1f} s "
                      f"{row['peak_rss_mb']:>8,.0f} MB (anon {row['peak_anon_mb']:,.0f}, file {row['peak_file_mb']:,.0f})", flush=True)
        agreement = storage_agreement(root / f"docs{max(args.sizes)}" / "ws")
    _report(rows, agreement, args.json)


def _report(rows: list[dict], agreement: dict, as_json: bool) -> None:
    print("\n| documents | tokens | stage | wall s | peak RSS MB | peak anon MB | peak file MB |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['docs']:,} | {r['tokens']:,} | {r['stage']} | {r['seconds']:.1f} | {r['peak_rss_mb']:,.0f} | "
              f"{r['peak_anon_mb']:,.0f} | {r['peak_file_mb']:,.0f} |")
    print()
    for label, key in (("peak RSS", "peak_rss_mb"), ("peak anonymous", "peak_anon_mb"), ("peak file-backed", "peak_file_mb")):
        print(f"{label} growth per token, smallest → largest size: "
              + ", ".join(f"{stage} {b:,.1f} B" for stage, b in growth(rows, key).items()))
    if len({r["docs"] for r in rows}) > 1:
        for label, key in (("peak", "peak_rss_mb"), ("anonymous peak", "peak_anon_mb")):
            g = goal(rows, key)
            print(f"scores at {g['token_ratio']:.1f}× the tokens: {label} {g['rss_mb']:,.0f} MB (limit "
                  f"{g['rss_limit_mb']:,.0f} MB: {'met' if g['rss_ok'] else 'NOT met'}), wall {g['time_ratio']:.1f}× "
                  f"({'met' if g['time_ok'] else 'NOT met'}, ≤ 10×)")
    print("mask agreement with fp32 storage (Jaccard of selected tokens, largest size): "
          + ", ".join(f"{k} {v:.4f}" for k, v in agreement.items()))
    if as_json:
        for r in rows:
            print(json.dumps(r))


if __name__ == "__main__":
    main()
