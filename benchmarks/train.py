"""Training throughput of the IF-Guide penalty objective vs plain cross-entropy: tokens/s and model FLOPs utilisation.

Two measurements, each penalty vs plain on the same model, batch and optimizer:

- ``loop``: forward + backward + AdamW step in a bare loop. Plain = the model's own loss (``labels=``);
  penalty = logits → ``objective.penalty_loss`` with a random mask on ``--mask-share`` of the tokens.
- ``trainer``: the real engine, HF ``Trainer`` (plain) vs ``PenaltyTrainer`` (what ``ifguide train`` runs),
  including data loading, gradient clipping, the scheduler and logging.

MFU = achieved model FLOP/s ÷ peak, with model FLOPs per token = 6·N (N = parameters without the input
embedding) + 12·layers·hidden·seq_len (attention), the PaLM-paper convention. Peak: the datasheet bf16 dense
figure on a known GPU, else ``--peak-tflops``, else (CPU) a measured large fp32 matmul, so CPU "MFU" is
relative to what this CPU's matmul reaches.

    python benchmarks/train.py                         # CPU, tiny model (hidden 128, 2 layers), seq 64
    python benchmarks/train.py --size small            # CPU, hidden 256, 4 layers, seq 256
    python benchmarks/train.py --size pythia-160m --batch 8 --seq-len 2048   # GPU (bf16 autocast)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

SIZES = {  # GPT-NeoX shapes; pythia-160m is the paper's architecture (built from this config, no download)
    "tiny": dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, intermediate_size=512, vocab_size=2048,
                 seq_len=64, batch=32),
    "small": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024, vocab_size=8192,
                  seq_len=256, batch=8),
    "pythia-160m": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                        vocab_size=50304, seq_len=2048, batch=8),
}
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0, "L4": 121.0}


def build_model(size: str, device: str):
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    spec = {k: v for k, v in SIZES[size].items() if k not in ("seq_len", "batch")}
    cfg = GPTNeoXConfig(**spec, max_position_embeddings=2048, rotary_pct=0.25, use_parallel_residual=True,
                        tie_word_embeddings=False, hidden_dropout=0.0, attention_dropout=0.0)
    torch.manual_seed(0)
    return GPTNeoXForCausalLM(cfg).to(device)


def flops_per_token(model, seq_len: int) -> float:
    cfg = model.config
    n = sum(p.numel() for p in model.parameters()) - model.get_input_embeddings().weight.numel()
    return 6.0 * n + 12.0 * cfg.num_hidden_layers * cfg.hidden_size * seq_len


def peak_flops(device: str, override_tflops: float | None) -> tuple[float, str]:
    if override_tflops:
        return override_tflops * 1e12, "given"
    if device == "cuda":
        name = torch.cuda.get_device_name(0)
        for key, tflops in PEAK_BF16_TFLOPS.items():
            if key in name:
                return tflops * 1e12, f"{key} bf16 dense datasheet"
        return float("nan"), f"unknown GPU {name}: pass --peak-tflops"
    a = torch.randn(1024, 1024)
    b = torch.randn(1024, 1024)
    for _ in range(3):
        a @ b
    t = time.perf_counter()
    reps = 20
    for _ in range(reps):
        a @ b
    dt = time.perf_counter() - t
    return 2 * 1024 ** 3 * reps / dt, f"measured fp32 1024² matmul, {torch.get_num_threads()} thread(s)"


def _sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def bench_loop(size, batch, seq_len, device, precision, steps, warmup, mask_share) -> dict:
    """Median step time of each objective, the two alternating step by step (two models, two optimizers)."""
    from ifguide_cli.core.training.objective import penalty_loss

    models = {"plain": build_model(size, device), "penalty": build_model(size, device)}
    opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.01) for k, m in models.items()}
    vocab = models["plain"].config.vocab_size
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (batch, seq_len), generator=g).to(device)
    mask = (torch.rand(batch, seq_len, generator=g) < mask_share).to(device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if precision == "bf16" else torch.autocast("cpu", enabled=False)
    times = {"plain": [], "penalty": []}
    for i in range(warmup + steps):
        for objective, model in models.items():
            _sync(device)
            t = time.perf_counter()
            with autocast:
                if objective == "plain":
                    loss = model(input_ids=ids, labels=ids).loss
                else:
                    loss = penalty_loss(model(input_ids=ids).logits, ids, mask, 1.0)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opts[objective].step()
            opts[objective].zero_grad(set_to_none=True)
            _sync(device)
            if i >= warmup:
                times[objective].append(time.perf_counter() - t)
    return times


def bench_trainer(size, batch, seq_len, device, precision, objective, steps, warmup, mask_share):
    from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments

    from ifguide_cli.core.data.rows import CorpusRows
    from ifguide_cli.core.training.trainer import PenaltyTrainer

    model = build_model(size, device)
    vocab = model.config.vocab_size
    n = batch * (steps + warmup)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (n, seq_len), generator=g)
    att = torch.ones_like(ids)
    mask = torch.rand(n, seq_len, generator=g) < mask_share
    times = []

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            _sync(device)
            self.t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            _sync(device)
            if state.global_step > warmup:
                times.append(time.perf_counter() - self.t)

    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, per_device_train_batch_size=batch, max_steps=steps + warmup,
                                 learning_rate=1e-4, adam_beta1=0.9, adam_beta2=0.95, weight_decay=0.01,
                                 lr_scheduler_type="cosine", warmup_steps=0.01, max_grad_norm=1.0,
                                 bf16=precision == "bf16", use_cpu=device == "cpu", remove_unused_columns=False,
                                 report_to=[], save_strategy="no", logging_steps=10, disable_tqdm=True,
                                 dataloader_drop_last=True)
        if objective == "plain":
            trainer = Trainer(model=model, args=args, train_dataset=CorpusRows(ids, att))
        else:
            trainer = PenaltyTrainer(model=model, args=args, train_dataset=CorpusRows(ids, att, mask=mask), lam=1.0)
        trainer.remove_callback(PrinterCallback)
        trainer.add_callback(Timer())
        trainer.train()
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="tiny")
    ap.add_argument("--batch", type=int)
    ap.add_argument("--seq-len", type=int)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved plain/penalty repetitions (median taken)")
    ap.add_argument("--mask-share", type=float, default=0.01, help="share of tokens masked (the paper's top 1%%)")
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    ap.add_argument("--peak-tflops", type=float)
    ap.add_argument("--modes", default="loop,trainer")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()

    import transformers

    transformers.logging.set_verbosity_error()
    if a.threads:
        torch.set_num_threads(a.threads)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device
    precision = "bf16" if device == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    batch = a.batch or SIZES[a.size]["batch"]
    seq_len = a.seq_len or SIZES[a.size]["seq_len"]
    tokens = batch * seq_len
    probe = build_model(a.size, device)
    fpt = flops_per_token(probe, seq_len)
    params = sum(p.numel() for p in probe.parameters())
    del probe
    peak, peak_src = peak_flops(device, a.peak_tflops)
    dev_name = torch.cuda.get_device_name(0) if device == "cuda" else f"cpu ({torch.get_num_threads()} threads)"

    rows = []
    for mode in [m.strip() for m in a.modes.split(",") if m.strip()]:
        samples = {"plain": [], "penalty": []}
        if mode == "loop":
            for objective, secs in bench_loop(a.size, batch, seq_len, device, precision, a.steps * a.repeats, a.warmup,
                                              a.mask_share).items():
                samples[objective] = secs
        else:
            for _ in range(a.repeats):  # interleaved runs, so that load drift on a shared machine hits both alike
                for objective in ("plain", "penalty"):
                    samples[objective] += bench_trainer(a.size, batch, seq_len, device, precision, objective, a.steps,
                                                        a.warmup, a.mask_share)
        for objective, secs in samples.items():
            sec = statistics.median(secs)
            tps = tokens / sec
            rows.append({"mode": mode, "objective": objective, "step_s": sec, "tokens_per_s": tps,
                         "mfu": tps * fpt / peak if peak == peak else None, "steps_timed": len(secs)})
    for mode in {r["mode"] for r in rows}:
        plain = next(r for r in rows if r["mode"] == mode and r["objective"] == "plain")
        pen = next(r for r in rows if r["mode"] == mode and r["objective"] == "penalty")
        pen["vs_plain"] = pen["tokens_per_s"] / plain["tokens_per_s"]

    result = {"device": dev_name, "precision": precision, "size": a.size, "params": params, "batch": batch,
              "seq_len": seq_len, "tokens_per_step": tokens, "model_flops_per_token": fpt, "peak_flops": peak,
              "peak_source": peak_src, "mask_share": a.mask_share, "rows": rows}
    if a.json:
        print(json.dumps(result, indent=2))
        return
    print(f"device {dev_name}, {precision}; model {a.size} ({params / 1e6:.2f}M params), batch {batch} × {seq_len} tokens; "
          f"{fpt / 1e6:.2f} MFLOP/token; peak {peak / 1e12:.2f} TFLOP/s ({peak_src})")
    print(f"{'mode':8s} {'objective':9s} {'step ms':>9s} {'tokens/s':>11s} {'MFU':>7s} {'vs plain':>9s}")
    for r in rows:
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
        rel = f"{r['vs_plain']:.3f}" if "vs_plain" in r else ""
        print(f"{r['mode']:8s} {r['objective']:9s} {1000 * r['step_s']:9.1f} {r['tokens_per_s']:11,.0f} {mfu:>7s} {rel:>9s}")


if __name__ == "__main__":
    main()
