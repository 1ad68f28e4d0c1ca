"""`ifguide estimate`: peak GPU memory per stage for a model size, precision, batch, LoRA and FSDP, before launching."""

from __future__ import annotations

from typing import Annotated

import typer

from ifguide_cli.cli import common
from ifguide_cli.cli.commands import summary

_EPILOG = ("A first-order estimate, every term documented in `core/paper/memory.py` (activations: Korthikanti et al. "
           "2022 with flash attention); frameworks add allocator overhead, so compare the total with ~90% of the card. "
           "MODEL: an architecture on record (`pythia-160m` … `pythia-2.8b`, `llama-3.2-1b`, `llama-3.1-8b`).\n\n"
           "Examples:\n\n"
           "ifguide estimate pythia-2.8b\n"
           "ifguide estimate llama-3.1-8b --lora-rank 16 --gradient-checkpointing\n"
           "ifguide estimate llama-3.1-8b --fsdp 8 --weights fp32 --json")


def register(app: typer.Typer) -> None:
    @app.command("estimate", help=summary("estimate"), epilog=_EPILOG)
    def estimate(
        model: Annotated[str, typer.Argument(metavar="MODEL", help="Architecture on record (see the examples).")],
        weights: Annotated[str, typer.Option("--weights", help="Weight dtype: bf16 (the reference) or fp32 (master "
                                                                "weights under bf16 autocast).")] = "bf16",
        micro_batch: Annotated[int, typer.Option("--micro-batch", min=1, help="Sequences per GPU per forward.")] = 8,
        seq_len: Annotated[int, typer.Option("--seq-len", min=1, help="Tokens per sequence.")] = 2048,
        lora_rank: Annotated[int, typer.Option("--lora-rank", min=0, help="LoRA rank of the fine-tune (0: full).")] = 0,
        fsdp: Annotated[int, typer.Option("--fsdp", min=1, help="GPUs the weights and optimizer state are sharded "
                                                                  "over (FSDP full shard; 1: none).")] = 1,
        checkpointing: Annotated[bool, typer.Option("--gradient-checkpointing", help="Recompute activations in the "
                                                    "backward pass (`finetune --gradient-checkpointing`).")] = False,
        gpu_gb: Annotated[float, typer.Option("--gpu-gb", min=1, help="Memory of one GPU, GB.")] = 80.0,
    ) -> None:
        from ifguide_cli.core.paper import memory

        if weights not in ("bf16", "fp32"):
            common.fail(f"--weights must be bf16 or fp32, not {weights!r}", exit_code=2)
        inputs = memory.MemoryInputs(_arch(model), 2 if weights == "bf16" else 4, micro_batch, seq_len, lora_rank, fsdp,
                                     checkpointing)
        stages = memory.estimate(inputs)
        budget = 0.9 * gpu_gb * 1e9
        payload = {"model": model, "weights": weights, "micro_batch": micro_batch, "seq_len": seq_len,
                   "lora_rank": lora_rank, "fsdp": fsdp, "gradient_checkpointing": checkpointing, "gpu_gb": gpu_gb,
                   "stages": {s: {**parts, "fits": parts["total"] <= budget} for s, parts in stages.items()}}
        common.emit(payload, _render(payload))


def _arch(model: str):
    from ifguide_cli.core.paper.plan import ARCHS

    if model not in ARCHS:
        common.fail(f"no architecture on record for {model!r}", hint=f"choose one of {', '.join(ARCHS)}", exit_code=2)
    return ARCHS[model]


def _render(payload: dict):
    def render(console):
        from rich.table import Table

        table = Table(title=f"{payload['model']}: estimated peak memory per GPU (GB) — {payload['weights']} weights, "
                            f"{payload['micro_batch']} × {payload['seq_len']} tokens, LoRA rank {payload['lora_rank']}, "
                            f"FSDP over {payload['fsdp']}"
                            f"{', gradient checkpointing' if payload['gradient_checkpointing'] else ''}", title_justify="left")
        for col in ("stage", "weights", "gradients", "optimizer", "activations", "other", "total", f"fits {payload['gpu_gb']:g} GB"):
            table.add_column(col, justify="left" if col == "stage" else "right", no_wrap=True)
        for stage, parts in payload["stages"].items():
            cells = [f"{parts[k] / 1e9:.1f}" for k in ("weights", "gradients", "optimizer", "activations", "other", "total")]
            table.add_row(stage, *cells, "yes" if parts["fits"] else "[red]no[/]")
        console.print(table)

    return render
