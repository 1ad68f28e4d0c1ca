"""Throughput of influence factors and per-token differential scores vs a plain forward+backward.

Builds a Pythia-architecture GPT-NeoX from config (random weights; no download), random token rows, and times:

  fwd+bwd      plain training forward + backward (summed CE), same precision and batch size
  factors      EK-FAC fit: covariance + eigendecomposition + Lambda (what `ifguide factors` runs)
  scores 1x    per-token differential scores, ONE pass (toxic +1/N and safe −1/N queries in one set)
  scores 2x    the reference: toxic run and safe run, then the difference

and prints tokens/s and the ratio to fwd+bwd (higher is better). Factors/scores run the same InfluenceEngine as the
CLI (kronfluence underneath). Examples:

    python benchmarks/influence.py                                  # CPU: pythia-14m, 16 × 256 tokens, fp32
    python benchmarks/influence.py --size 160m --docs 512 --seq-len 2048 --precision bf16   # GPU reference setting

Goal on an H100 at 160m, 512×2048, bf16: scores ≥ 0.6× fwd+bwd and ≥ 2× the two-run reference.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PYTHIA = {  # hidden, layers, heads (intermediate = 4 × hidden), as published for the Pythia suite
    "14m": (128, 6, 4),
    "70m": (512, 6, 8),
    "160m": (768, 12, 12),
    "410m": (1024, 24, 16),
}


def build_model(size: str, seq_len: int, seed: int = 0):
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    hidden, layers, heads = PYTHIA[size]
    config = GPTNeoXConfig(vocab_size=50304, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                           intermediate_size=4 * hidden, max_position_embeddings=max(2048, seq_len), rotary_pct=0.25,
                           use_parallel_residual=True, tie_word_embeddings=False, hidden_dropout=0.0, attention_dropout=0.0)
    torch.manual_seed(seed)
    return GPTNeoXForCausalLM(config).eval()


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_fwd_bwd(model, rows, batch_size: int, precision: str, device) -> float:
    """Seconds for one plain forward+backward pass over all rows (after one warm-up batch)."""
    import copy

    import torch

    from ifguide_cli.core.training.objective import shifted_token_ce

    m = copy.deepcopy(model).to(device)
    if precision == "bf16":
        m = m.to(torch.bfloat16)
    m.train()
    ids, am = rows.input_ids, rows.attention_mask

    def step(lo: int, hi: int) -> None:
        batch_ids = ids[lo:hi].to(device)
        batch_am = am[lo:hi].to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits = m(input_ids=batch_ids, attention_mask=batch_am).logits
        shifted_token_ce(logits, batch_ids)[0].sum().backward()
        m.zero_grad(set_to_none=True)

    step(0, batch_size)
    sync(device)
    start = time.perf_counter()
    for lo in range(0, len(ids), batch_size):
        step(lo, lo + batch_size)
    sync(device)
    return time.perf_counter() - start


def random_queries(n: int, length: int, vocab: int, seed: int):
    import random

    rng = random.Random(seed)
    ids = [[rng.randrange(1, vocab) for _ in range(length)] for _ in range(n)]
    return ids, [length // 2] * n


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(PYTHIA), default="14m")
    parser.add_argument("--docs", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--batch-size", type=int, default=None, help="rows per batch (default: 16384 tokens' worth)")
    parser.add_argument("--queries", type=int, default=32, help="queries per set (toxic and safe)")
    parser.add_argument("--query-len", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--skip-factors", action="store_true", help="score with identity factors (no EK-FAC fit timing)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    import torch

    from ifguide_cli.core import dist
    from ifguide_cli.core.data.rows import CorpusRows
    from ifguide_cli.core.influence import (
        InfluenceEngine,
        QuerySet,
        align_to_labels,
        default_batch_size,
        query_rows,
        two_run_reference,
    )

    if args.threads:
        torch.set_num_threads(args.threads)
    dinfo = dist.setup(args.device)
    device = dinfo.device
    model = build_model(args.size, args.seq_len)
    vocab = model.config.vocab_size
    gen = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1, vocab, (args.docs, args.seq_len), generator=gen)
    rows = CorpusRows(input_ids, torch.ones_like(input_ids), with_index=True)
    tokens = args.docs * args.seq_len
    batch = args.batch_size or default_batch_size(args.seq_len)
    modules = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and ".layers." in n]
    tox_ids, tox_n = random_queries(args.queries, args.query_len, vocab, 1)
    safe_ids, safe_n = random_queries(args.queries, args.query_len, vocab, 2)
    toxic = QuerySet("random-toxic", {}, [{}] * args.queries, tox_ids, tox_n)
    safe = QuerySet("random-safe", {}, [{}] * args.queries, safe_ids, safe_n)
    results = {"size": args.size, "docs": args.docs, "seq_len": args.seq_len, "tokens": tokens, "precision": args.precision,
               "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
               "batch_size": batch, "queries_per_set": args.queries, "query_len": args.query_len}

    fwd_bwd = time_fwd_bwd(model, rows, batch, args.precision, device)
    engine = InfluenceEngine(model, modules, dinfo, args.precision)
    strategy = "identity" if args.skip_factors else "ekfac"
    with tempfile.TemporaryDirectory(prefix="ifguide-bench-") as tmp:
        tmp = Path(tmp)
        sync(device)
        start = time.perf_counter()
        engine.fit(tmp / "factors", rows, strategy, args.docs, batch, 1)
        sync(device)
        factors_s = time.perf_counter() - start
        factors_dir = tmp / "factors" / "kronfluence" / f"factors_{strategy}"
        sync(device)
        start = time.perf_counter()
        one = engine.scores(tmp / "one", factors_dir, rows, query_rows(toxic, safe, 0), damping=None, per_module=False,
                            batch_size=batch, query_batch_size=16, partitions=1)
        sync(device)
        one_s = time.perf_counter() - start
        start = time.perf_counter()
        two = two_run_reference(engine, tmp / "two", factors_dir, rows, toxic, safe, 0, damping=None, batch_size=batch)
        sync(device)
        two_s = time.perf_counter() - start
    one_aligned = align_to_labels(one["all_modules"])
    err = float((one_aligned - two).abs().max())
    scale = float(one_aligned.abs().max())
    rows_out = [("fwd+bwd", fwd_bwd), (f"factors ({strategy}, all passes)", factors_s), ("scores, one pass", one_s),
                ("scores, two runs (reference)", two_s)]
    results["stages"] = {name: {"seconds": round(s, 3), "tokens_per_s": round(tokens / s, 1), "vs_fwd_bwd": round(fwd_bwd / s, 3)}
                         for name, s in rows_out}
    results["one_pass_speedup_vs_two_runs"] = round(two_s / one_s, 3)
    results["one_pass_vs_two_runs_max_abs_error"] = err
    results["one_pass_vs_two_runs_relative_error"] = err / scale if scale else 0.0
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"pythia-{args.size} architecture, {args.docs} × {args.seq_len} = {tokens} tokens, {args.precision}, "
              f"{results['device']}, batch {batch} rows, {args.queries}+{args.queries} queries of {args.query_len} tokens")
        print(f"{'stage':<34}{'seconds':>10}{'tokens/s':>12}{'vs fwd+bwd':>12}")
        for name, stats in results["stages"].items():
            print(f"{name:<34}{stats['seconds']:>10.3f}{stats['tokens_per_s']:>12.0f}{stats['vs_fwd_bwd']:>12.3f}")
        print(f"one pass is {results['one_pass_speedup_vs_two_runs']:.2f}× faster than two runs; "
              f"max |one pass − two runs| = {err:.3g} (relative {results['one_pass_vs_two_runs_relative_error']:.1e})")
    return results


if __name__ == "__main__":
    main()
