"""Step 4 of IF-Guide: `ifguide train` / `ifguide finetune` resolve their inputs and build (or reuse) a checkpoint.

This module only decides WHAT to train (model, corpus, mask, configuration, the artifact's identity);
`checkpoint.py` trains it, and is imported only then (it imports transformers).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .. import notes
from ..artifact_files import MASK_FILE
from ..dist import barrier, rank_and_world, resolve_device
from ..errors import IfguideError
from ..progress import NULL
from .config import RunOptions, TrainConfig, default_profile, load_config_file, option_values, resolve_config


@dataclass
class TrainResult:
    artifact: Any
    reused: bool
    config: TrainConfig
    options: RunOptions
    info: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TrainPlan:
    """Everything a checkpoint build needs, resolved (what `checkpoint.build_checkpoint` trains)."""

    mref: Any
    corpus: Any  # the training corpus (input_ids, attention_mask; docs × seq_len)
    mask: Any  # bool (docs × seq_len) or None
    eval_art: Any  # the dataset artifact to evaluate on, or None
    train: TrainConfig
    run: RunOptions
    config: dict  # the artifact's config (its identity)
    restart: bool = False
    reporter: Any = NULL


def run_training(ws, *, mode: str, model_ref: str, data_ref: str, mask_ref: str | None = None, values: dict | None = None,
                 config_file: str | None = None, force: bool = False, restart: bool = False, name: str | None = None,
                 reporter=NULL) -> TrainResult:
    """`ifguide train` / `ifguide finetune`: resolve inputs, then build (or reuse) the checkpoint artifact.

    `values` are the options given (field or option names; None = not given), over the `config_file`
    YAML, over the profile's defaults. `profile`, `seq_len` and `batch_tokens` may be among them.
    """
    from ..data import load_corpus, resolve_corpus

    if mode not in ("pretrain", "finetune"):
        raise ValueError(mode)
    file_values = load_config_file(config_file)
    values = option_values(values)  # checked now: a bad value fails before any work
    setup = {**file_values, **values}

    mref = prepare_model_ref(ws, model_ref, mode)
    profile = setup.get("profile") or _default_profile(ws, mref, model_ref, data_ref)
    mask_art = ws.resolve(mask_ref, "masks") if mask_ref is not None else None
    ds_art, _ = resolve_corpus(ws, data_ref, mref, setup.get("seq_len"), reporter=reporter, barrier=barrier)
    corpus = load_corpus(ds_art)
    mask = load_mask(ws, mask_art, ds_art, corpus.shape) if mask_art is not None else None
    tc, ro = resolve_config(mode, profile, file_values, values, corpus.shape[1])
    tc = _without_idle_lambda(tc, mask_art)
    eval_art = None
    if tc.eval_data:
        eval_art, _ = resolve_corpus(ws, tc.eval_data, mref, corpus.shape[1], reporter=reporter, barrier=barrier)

    config = _artifact_config(mref, profile, ds_art, mask_art, eval_art, tc)
    plan = TrainPlan(mref, corpus, mask, eval_art, tc, ro, config, restart=restart, reporter=reporter)
    parents = [*mref.parents, ds_art.id] + ([mask_art.id] if mask_art else [])
    art, reused = ws.create("checkpoints", config, parents, lambda ctx: _build(ctx, plan), name=name, force=force,
                            device=_device())
    return TrainResult(art, reused, tc, ro, {"dataset": ds_art.id, "mask": mask_art.id if mask_art else None,
                                             "profile": profile, "seq_len": corpus.shape[1], "documents": corpus.shape[0]})


def prepare_model_ref(ws, model_ref: str, mode: str):
    """Resolve MODEL for `train` (architecture) or `finetune` (weights), with one clear line when it cannot be used."""
    from ..models import resolve_model
    from ..registry import MODELS

    path = Path(model_ref).expanduser()
    if not path.exists() and model_ref not in MODELS and len(model_ref) >= 4 and all(c in "0123456789abcdef" for c in model_ref):
        ws.resolve(model_ref, "checkpoints")  # an id that is not there: "no checkpoint ..." rather than "unknown model"
    mref = resolve_model(model_ref, ws)
    if mode == "finetune" and mref.source == "registry" and MODELS[mref.location].hub_id is None:
        raise IfguideError(f"{model_ref!r} has no pretrained weights to fine-tune",
                           hint=f"train it first (`ifguide train {model_ref} --data ...`) and fine-tune that checkpoint",
                           exit_code=2)
    return mref


def _default_profile(ws, mref, model_ref: str, data_ref: str) -> str:
    """The profile by model and data; a checkpoint keeps the profile it was trained with."""
    base_profile = None
    if mref.source == "checkpoint":
        base = ws.by_id(mref.artifact_id)
        base_profile = base.config.get("profile") if base else None
    return default_profile(model_ref if mref.source == "registry" else "", data_ref, base_profile)


def load_mask(ws, mask_art, dataset_art, corpus_shape):
    """The boolean (docs × seq_len) mask of a mask artifact, checked to index the same tensor as the training data."""
    from safetensors.torch import load_file

    from ..data import recorded_dataset

    recorded_dataset(ws, mask_art, dataset_art, what=f"mask {mask_art.id}",
                     hint="pass the --data (and --seq-len) the scores were computed on, or recompute the mask")
    tensors = load_file(str(mask_art.file(MASK_FILE)))
    if "mask" not in tensors:
        raise IfguideError(f"mask artifact {mask_art.id} has no `mask` tensor in {MASK_FILE}",
                           hint="rebuild it with `ifguide mask ... --force`")
    mask = tensors["mask"].bool()
    if tuple(mask.shape) != tuple(corpus_shape):
        raise IfguideError(f"mask {mask_art.id} has shape {tuple(mask.shape)} but dataset {dataset_art.id} has "
                           f"{tuple(corpus_shape)} (docs × seq_len)",
                           hint="the mask must come from scores on the same data, same order and --seq-len", exit_code=2)
    return mask


def _without_idle_lambda(tc: TrainConfig, mask_art) -> TrainConfig:
    """λ weighs masked tokens only: without a mask it changes nothing, so it must not change the artifact id."""
    if mask_art is not None or tc.lam == TrainConfig.lam:
        return tc
    notes.warn("--lambda has no effect without --mask (plain language-model training)")
    return replace(tc, lam=TrainConfig.lam)


def _artifact_config(mref, profile: str, ds_art, mask_art, eval_art, tc: TrainConfig) -> dict:
    """The checkpoint's identity: what was trained from what, with which settings."""
    from ..models import model_family

    return {
        "mode": tc.mode,
        "model": mref.identity(),
        "tokenizer": mref.tokenizer,
        "family": mref.family if mref.family is not None else model_family(mref),
        "profile": profile,
        "dataset": ds_art.id,
        "mask": mask_art.id if mask_art else None,
        "lambda": tc.lam if mask_art else None,
        "seed": tc.seed,
        "eval_dataset": eval_art.id if eval_art else None,
        "train": tc.to_dict(),
    }


def _build(ctx, plan: TrainPlan) -> dict:
    from .checkpoint import build_checkpoint

    return build_checkpoint(ctx, plan)


def _device() -> str:
    from ..dist import device_label

    return device_label(resolve_device("auto"), rank_and_world()[1])
