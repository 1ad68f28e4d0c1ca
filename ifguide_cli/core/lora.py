"""LoRA fine-tuning through the `peft` library: adapters trained with the same objective, stored small.

A LoRA checkpoint artifact keeps the adapter (``adapter/``: peft's ``adapter_config.json`` +
``adapter_model.safetensors``) and, in ``model/``, the base's config and tokenizer but no weights: the base
is recorded in the manifest (``config.model``) and loaded again when the checkpoint is used, with the adapter
merged into it in memory (`load_with_adapter`). ``finetune --merge`` also publishes a child checkpoint with
the merged full weights (`core/training/merge.py`), which any tool loads with ``from_pretrained``.

Influence (`factors`, `scores`) runs on the merged weights: the model a user evaluates and deploys is the
merged one, and kronfluence's EK-FAC factors are fitted per linear module of that model. Restricting
influence to the adapter parameters would score a different (rank-r) parameter space and needs
kronfluence's tracked-module selection; it is not offered.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any

from ifguide_cli.core.errors import IfguideError

ADAPTER_DIR = "adapter"
ADAPTER_CONFIG = "adapter_config.json"
# output heads never get adapters: they are tied to (or as large as) the vocabulary
_HEADS = ("lm_head", "embed_out")


def check_lora_applies(mode: str, given: dict) -> None:
    """LoRA adapts pretrained weights: asked for with `train` (from scratch) it is an error, not ignored."""
    if mode == "pretrain" and given.get("lora_rank"):
        raise IfguideError("--lora-rank applies to `finetune` only: `train` starts from random weights",
                           hint="train the model first, then `ifguide finetune CHECKPOINT --lora-rank R ...`", exit_code=2)
    if not given.get("lora_rank") and (given.get("lora_alpha") is not None or given.get("lora_targets")):
        raise IfguideError("--lora-alpha / --lora-targets need --lora-rank R (> 0)", exit_code=2)


def default_alpha(rank: int, alpha: float | None) -> float:
    """LoRA's scaling α; 2 × rank by default (a common choice that keeps the update's scale independent of r)."""
    return float(alpha) if alpha is not None else 2.0 * rank


def linear_module_names(model) -> list[str]:
    """Names of the model's linear layers (full dotted paths), output heads excluded."""
    import torch

    return [name for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1] not in _HEADS]


def target_modules(model, globs: str | None) -> list[str]:
    """The linear layers matched by the comma-separated globs (against the full name or its last part)."""
    linear = linear_module_names(model)
    if not globs:
        return linear
    patterns = [g.strip() for g in globs.split(",") if g.strip()]
    chosen = [n for n in linear if any(fnmatch.fnmatch(n, p) or fnmatch.fnmatch(n.rsplit(".", 1)[-1], p) for p in patterns)]
    if not chosen:
        leaves = sorted({n.rsplit(".", 1)[-1] for n in linear})
        raise IfguideError(f"--lora-targets {globs!r} matches no linear layer of the model",
                           hint=f"its linear layers are named {', '.join(leaves)}", exit_code=2)
    return chosen


def apply_lora(model, rank: int, alpha: float | None, globs: str | None, seed: int):
    """The model with LoRA adapters on the chosen linear layers; only the adapters train.

    The adapters' random initialisation is seeded (by the run's seed, without disturbing the caller's random
    stream): the same command gives the same weights, and a resumed run continues the run it resumes."""
    import torch
    from peft import LoraConfig, get_peft_model

    # peft annotates lora_alpha as int, but only divides it by r: a fractional α works
    config = LoraConfig(r=rank, lora_alpha=default_alpha(rank, alpha), lora_dropout=0.0, bias="none",  # type: ignore[arg-type]
                        target_modules=target_modules(model, globs), task_type="CAUSAL_LM")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return get_peft_model(model, config)


def save_adapter(model, folder: Path) -> None:
    """peft's adapter files (safetensors), nothing else."""
    model.save_pretrained(str(folder), safe_serialization=True)


def has_adapter(checkpoint_dir: Path) -> bool:
    """A checkpoint artifact folder that holds a LoRA adapter (and no full weights of its own)."""
    return (checkpoint_dir / ADAPTER_DIR / ADAPTER_CONFIG).is_file()


def load_with_adapter(base_model, adapter_dir: Path):
    """The base model with the adapter merged in (a plain transformers model again)."""
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(base_model, str(adapter_dir)).merge_and_unload()
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise IfguideError(f"the LoRA adapter in {adapter_dir} does not load onto its base model: {exc}",
                           hint="rebuild the checkpoint (the same finetune command with --force)") from None


def lora_summary(model, rank: int, alpha: float | None) -> dict[str, Any]:
    """What the summary records of a LoRA run: rank, α, and the trainable share of the parameters."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"lora_rank": rank, "lora_alpha": default_alpha(rank, alpha), "trainable_parameters": trainable,
            "trainable_share": round(trainable / max(total, 1), 6)}
