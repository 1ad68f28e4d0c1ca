"""The training configuration: its fields (declared once), the per-model profiles, and their precedence.

Three typed configs, each field declared once with `param` (default, help, CLI flag, valid range):

- `TrainConfig`: everything that determines the trained weights (it is the checkpoint artifact's reuse key);
- `RunOptions`: how a run is executed and logged (not part of the artifact id);
- `SetupOptions`: what is resolved before the configuration (the profile, the corpus's row length, a batch in tokens).

The same declarations generate the `train`/`finetune` CLI options and name the keys a `--config` YAML
file accepts (a field name or its option name: `learning_rate` or `lr`). Precedence:
dataclass default < profile (`PROFILES`) < `--config` file < command-line options.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ifguide_cli.core.config import Config, Precision, check_value, field_hints, flag_of, param
from ifguide_cli.core.errors import IfguideError, check_range
from ifguide_cli.core.registry import is_packaged_model

Mode = Literal["pretrain", "finetune"]
Profile = Literal["paper", "tiny"]
Suppression = Literal["penalty", "filter", "drop"]  # what training does to masked tokens (see core/objective.py)
SUPPRESSIONS = typing.get_args(Suppression)
Scheduler = Literal["cosine", "linear", "constant", "constant_with_warmup", "cosine_with_restarts", "polynomial"]
SCHEDULERS = typing.get_args(Scheduler)
BY_PROFILE = "by profile"  # the help's default of a field that every profile sets
FLOAT32_MAX = 3.4028234663852886e38  # torch.finfo(torch.float32).max, without importing torch here
WeightsDtype = Literal["fp32", "bf16"]
BestBy = Literal["eval_loss"]
LATER_KNOBS = {"weights_dtype": "fp32", "best_checkpoint": None, "suppression": "penalty", "lora_rank": 0,
               "lora_alpha": None, "lora_targets": None}  # field -> the default left
# out of the identity


@dataclass(frozen=True)
class TrainConfig(Config):
    """Everything that determines the trained weights (it is the checkpoint artifact's reuse key).

    `batch_size` is the global batch in sequences per optimizer step (all processes, all accumulated
    micro-batches); tokens per step = batch_size × seq_len.
    """

    mode: Mode = param("pretrain", "pretrain (random init) or finetune (start from the given weights).", cli=False)
    # at most the largest float32: the token weights of the objective are float32 (objective.token_weights)
    lam: float = param(1.0, "Penalty strength λ ≥ 0: masked tokens get weight −λ (--suppression penalty only).",
                       flag="--lambda", low=0, high=FLOAT32_MAX)
    suppression: Suppression = param(
        "penalty", "Masked tokens get weight −λ (penalty: IF-Guide) or 0 (filter: token filtering; still counted in "
                   "the loss's token count), or every document with one is left out (drop: document filtering).")
    learning_rate: float = param(6e-4, "Peak learning rate.", flag="--lr", low=0, low_open=True, shown_default=BY_PROFILE)
    weight_decay: float = param(0.01, "AdamW weight decay.", low=0, shown_default=BY_PROFILE)
    adam_beta1: float = param(0.9, "AdamW β1.", flag="--beta1", low=0, high=1, high_open=True)
    adam_beta2: float = param(0.95, "AdamW β2.", flag="--beta2", low=0, high=1, high_open=True)
    adam_epsilon: float = param(1e-8, "AdamW ε.", flag="--adam-eps", low=0, low_open=True)
    lr_scheduler: Scheduler = param("cosine", "LR schedule.", flag="--scheduler")
    warmup_ratio: float = param(0.01, "Warm-up share of the steps.", low=0, high=1, high_open=True)
    max_grad_norm: float = param(1.0, "Max gradient norm, 0 = off.", flag="--grad-clip", low=0)
    batch_size: int = param(256, "Global batch in sequences per optimizer step.", low=1, shown_default=BY_PROFILE)
    max_steps: int | None = param(None, "Optimizer steps (else --epochs over the data).", low=1, shown_default=BY_PROFILE)
    epochs: float = param(1.0, "Passes over the data when --max-steps is not set.", low=0, low_open=True)
    seed: int = param(0, "Seed of the data order and dropout (and of the initialisation, for `train`).", low=0, high=2**32 - 1)
    precision: Precision = param("auto", "Training precision; auto = bf16 autocast on CUDA (if supported), fp32 on CPU.")
    val_fraction: float = param(0.0, "Hold out this share of the corpus rows (the last ones) for the eval loss.",
                                low=0, high=1, high_open=True, shown_default=BY_PROFILE)
    eval_data: str | None = param(None, "Evaluate on this dataset (tokenized like the training data) instead of held-out rows.",
                                  shown_default=BY_PROFILE)
    eval_docs: int = param(512, "At most this many validation rows.", low=1, shown_default=BY_PROFILE)
    weights_dtype: WeightsDtype = param(
        "fp32", "Dtype of the weights and the AdamW state: fp32 (master weights under bf16 autocast) | bf16 (the "
                "reference's: the model built in bfloat16; needs a CUDA GPU and bf16 precision).")
    best_checkpoint: BestBy | None = param(
        None, "eval_loss: end with the checkpoint of the lowest eval loss (evaluated every --eval-steps; --save-steps "
              "a multiple of it), as the reference's pre-training does; default: the last step.")

    lora_rank: int = param(0, "finetune: train LoRA adapters of this rank instead of every weight (peft; 0 = full "
                              "fine-tune). The checkpoint stores the adapter; --merge adds the merged weights.", low=0)
    lora_alpha: float | None = param(None, "LoRA scaling α.", low=0, low_open=True, shown_default="2 × rank")
    lora_targets: str | None = param(None, "Comma-separated globs of the linear layers that get adapters (full name or "
                                           "last part, e.g. 'query_key_value,dense*').", shown_default="every linear layer "
                                                                                                    "but the output head")

    def to_dict(self) -> dict[str, Any]:
        """The identity of the trained weights. Knobs added after checkpoints were first made are left out at
        their default, so a checkpoint trained before they existed is still found for the same request; λ is left
        out where it weighs nothing (filter, drop)."""
        out = {k: v for k, v in super().to_dict().items() if k not in LATER_KNOBS or v != LATER_KNOBS[k]}
        if self.suppression != "penalty":
            del out["lam"]
        return out


@dataclass(frozen=True)
class RunOptions(Config):
    """How a run is executed and logged; does not change the result (not part of the artifact id)."""

    micro_batch_size: int | None = param(None, "Sequences per device per forward (gradient accumulation fills the batch; "
                                               "capped by the batch).", low=1, shown_default=BY_PROFILE)
    save_steps: int = param(250, "Write an intermediate (resumable) checkpoint every N steps.", low=1, shown_default=BY_PROFILE)
    save_total_limit: int = param(2, "Keep at most N intermediate checkpoints.", low=1)
    logging_steps: int = param(10, "Log the loss every N steps.", low=1, shown_default=BY_PROFILE)
    eval_steps: int | None = param(None, "Evaluate every N steps.", low=1, shown_default="--save-steps")
    log_file: str | None = param(None, "Also append the training log (JSON lines) to this file.")
    report_to: str | None = param(None, "Experiment trackers, comma-separated: none | tensorboard | wandb | mlflow | "
                                        "trackio | all (every installed one). Run name: the artifact's name or id; the "
                                        "checkpoint's summary is logged too (ifguide/*). Offline: WANDB_MODE=offline, "
                                        "MLFLOW_TRACKING_URI=file:DIR.", shown_default="tensorboard if installed")
    gradient_checkpointing: bool = param(False, "Recompute activations in the backward pass: much less memory for big "
                                                "models, ~30% more compute (the HF Trainer's gradient checkpointing).")
    fsdp: str | None = param(None, "Shard the model over the processes with FSDP through the HF Trainer (accelerate), "
                                   "e.g. 'full_shard auto_wrap'; run under torchrun or accelerate launch.")
    merge: bool = param(False, "LoRA: also publish a checkpoint with the adapter merged into the base's weights (a child "
                               "of the adapter checkpoint, loadable by any tool with from_pretrained).")
    keep_optimizer_state: bool = param(False, "Keep the optimizer state of the intermediate checkpoints in the artifact.")
    probe_docs: int = param(32, "After training with --mask: the NLL of masked vs ordinary tokens (metrics.json) is "
                                "measured by one forward pass over at most N training rows that hold masked tokens "
                                "(0 = off; tiny profile 256, else 32).", low=0, shown_default=BY_PROFILE)


@dataclass(frozen=True)
class SetupOptions(Config):
    """What is resolved before the configuration: the profile, the corpus's row length, a batch given in tokens."""

    profile: Profile | None = param(None, "Default profile.", shown_default="by model/data")
    seq_len: int | None = param(None, "Tokens per row of the corpus (default: 64 for tiny; else fitted so that 95% of the "
                                      "documents fit in one row, at most the model's context; packed: the context).",
                                low=2, shown_default="by data")
    batch_tokens: int | None = param(None, "Global batch in tokens (÷ seq-len = --batch-size).", low=1)
    model_config: str | None = param(None, "train: the architecture from a transformers config.json file (instead of "
                                           "MODEL), trained from scratch with --tokenizer's vocabulary.")


CONFIGS = (TrainConfig, RunOptions, SetupOptions)

# Per-model default profiles: the paper's reference settings, and a small one for the packaged tiny data
# (so that `ifguide train tiny --data tiny` learns the planted insults in about a minute on 2 CPU cores).
PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "paper": {
        "pretrain": dict(learning_rate=6e-4, weight_decay=0.01, batch_size=256, max_steps=None, epochs=1.0,
                         val_fraction=0.001, micro_batch_size=8, save_steps=250, logging_steps=10),
        "finetune": dict(learning_rate=6e-5, weight_decay=4e-4, batch_size=256, max_steps=2000,
                         val_fraction=0.001, micro_batch_size=8, save_steps=250, logging_steps=10),
    },
    "tiny": {
        "pretrain": dict(learning_rate=3e-3, weight_decay=0.01, batch_size=32, max_steps=300,
                         eval_data="tiny-heldout", eval_docs=256, micro_batch_size=32, save_steps=100, logging_steps=10,
                         probe_docs=256),
        "finetune": dict(learning_rate=1e-3, weight_decay=4e-4, batch_size=32, max_steps=100,
                         eval_data="tiny-heldout", eval_docs=256, micro_batch_size=32, save_steps=50, logging_steps=10,
                         probe_docs=256),
    },
}
# The tiny profile validates on the packaged held-out text only when it trains on the packaged corpus: on a
# corpus of the user's own it holds out this share of the corpus's rows instead (at most --eval-docs).
OWN_DATA_VAL_FRACTION = 0.05


def _declared_fields() -> dict[str, tuple[dataclasses.Field, Any]]:
    """Every settable field of the three configs by name, with its resolved type (`mode` comes from the command)."""
    out = {}
    for cls in CONFIGS:
        hints = field_hints(cls)
        out.update({f.name: (f, hints[f.name]) for f in dataclasses.fields(cls) if f.name != "mode"})
    return out


FIELDS = _declared_fields()
# the keys a config file (or a pipeline section) may use: each field's name and its option name, nothing else
KEYS = {**{name: name for name in FIELDS},
        **{flag_of(f).lstrip("-").replace("-", "_"): name for name, (f, _) in FIELDS.items()}}


def given_values(values: Mapping[str, Any] | None, where: str) -> dict:
    """`values` keyed by field name, each checked against its declaration (fail before any work).

    Keys may be field names or option names, with `-` or `_`. A None from a file is a value
    (`max_steps: null` = train by epochs); `option_values` drops the Nones of options not given.
    """
    out = {}
    for key, value in (values or {}).items():
        name = KEYS.get(str(key).lstrip("-").replace("-", "_"))
        if name is None:
            raise IfguideError(f"unknown option {key!r} in {where}", hint=f"known: {', '.join(sorted(FIELDS))}", exit_code=2)
        field, tp = FIELDS[name]
        out[name] = check_value(field, tp, value)
    return out


def option_values(values: dict | None) -> dict:
    """Command-line (or pipeline) values by field name, checked; a None is an option not given, dropped."""
    return given_values({k: v for k, v in (values or {}).items() if v is not None}, "the options")


def load_config_file(path: str | os.PathLike | None) -> dict:
    """The values of a `--config` YAML file, keyed by field name and checked."""
    if not path:
        return {}
    from ifguide_cli.core.yamlfile import load_yaml_mapping

    return given_values(load_yaml_mapping(path, "config file"), "the config file")


def default_profile(model_ref: str, data_ref: str, base_profile: str | None = None) -> str:
    """`tiny` for a packaged model (`tiny`, `tiny-4x`: built from the packaged config, sized for a CPU), the packaged
    data, or a checkpoint trained with the tiny profile; else the paper's settings (256 × 2,048-token batches)."""
    if base_profile in PROFILES:
        return base_profile
    return "tiny" if is_packaged_model(model_ref) or data_ref.startswith("tiny") else "paper"


def profile_values(profile: str, mode: str, packaged_data: bool = True) -> dict[str, Any]:
    """A profile's defaults for this data: a validation set the profile names from the package is used only with
    the packaged data (see OWN_DATA_VAL_FRACTION)."""
    if profile not in PROFILES:
        raise IfguideError(f"unknown profile {profile!r}", hint=f"use one of {', '.join(PROFILES)}", exit_code=2)
    values: dict[str, Any] = dict(PROFILES[profile][mode])
    if not packaged_data and values.get("eval_data") is not None:
        values["eval_data"] = None
        values["val_fraction"] = OWN_DATA_VAL_FRACTION
    return values


def training_mode(mode: str) -> Mode:
    """`mode` as a training mode (the stages pass their own name: `pretrain` or `finetune`)."""
    if mode not in typing.get_args(Mode):
        raise IfguideError(f"unknown training mode {mode!r}", hint="use pretrain or finetune", exit_code=2)
    return typing.cast(Mode, mode)


def resolve_config(mode: str, profile: str, file_values: dict | None, cli_values: dict,
                   seq_len: int, packaged_data: bool = True) -> tuple[TrainConfig, RunOptions]:
    """Dataclass defaults < profile < config file < command-line options (None = not given)."""
    merged = profile_values(profile, mode, packaged_data)
    merged.update(given_values(file_values, "the config file"))
    merged.update(option_values(cli_values))
    batch_tokens = merged.get("batch_tokens")
    if batch_tokens is not None:
        check_range("--batch-tokens", batch_tokens, seq_len)
        merged["batch_size"] = batch_tokens // seq_len
    return (TrainConfig(**_of(TrainConfig, merged), mode=training_mode(mode)), RunOptions(**_of(RunOptions, merged)))


def _of(cls: type, values: dict) -> dict:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in values.items() if k in names}


def split_rows(n: int, tc: TrainConfig) -> tuple[list[int], list[int]]:
    """(training rows, validation rows): the last `val_fraction` of rows are held out (at most eval_docs)."""
    if tc.val_fraction <= 0 or tc.eval_data:
        return list(range(n)), []
    n_val = min(max(1, round(n * tc.val_fraction)), tc.eval_docs, n - 1)
    return list(range(n - n_val)), list(range(n - n_val, n))


def batch_layout(batch_size: int, micro_batch_size: int | None, world_size: int) -> tuple[int, int]:
    """(per-device micro-batch, gradient-accumulation steps) giving exactly `batch_size` sequences per step."""
    if batch_size % world_size:
        raise IfguideError(f"--batch-size {batch_size} is not divisible by the {world_size} processes", exit_code=2)
    per_device = batch_size // world_size
    micro = min(micro_batch_size or per_device, per_device)
    if per_device % micro:
        raise IfguideError(f"--batch-size {batch_size} over {world_size} process(es) is {per_device} per device, "
                           f"not a multiple of --micro-batch-size {micro}", exit_code=2)
    return micro, per_device // micro


def check_weights_dtype(weights_dtype: str, device: str, precision: str) -> None:
    """bf16 weights need a CUDA GPU and bf16 compute (one line otherwise); fp32 weights run everywhere."""
    if weights_dtype == "fp32":
        return
    if not str(device).startswith("cuda"):
        raise IfguideError("--weights-dtype bf16 needs a CUDA GPU", hint="use --weights-dtype fp32 (the default) on a CPU",
                           exit_code=2)
    if precision != "bf16":
        raise IfguideError(f"--weights-dtype bf16 needs bf16 compute, but the precision is {precision}",
                           hint="use --precision bf16 (or auto on a bf16-capable GPU)", exit_code=2)


def best_checkpoint_arguments(best_by: str | None, eval_steps: int, save_steps: int, has_eval: bool) -> dict:
    """The HF Trainer arguments that end a run on its best checkpoint (none without `best_by`).

    The Trainer keeps a checkpoint's metric only where it evaluated, so every save must fall on an
    evaluation: --save-steps a multiple of --eval-steps (the reference: 500 and 500)."""
    if best_by is None:
        return {}
    if not has_eval:
        raise IfguideError(f"--best-checkpoint {best_by} needs validation rows",
                           hint="pass --eval-data DATASET or --val-fraction > 0", exit_code=2)
    if save_steps % eval_steps:
        raise IfguideError(f"--best-checkpoint needs --save-steps ({save_steps}) to be a multiple of --eval-steps "
                           f"({eval_steps})", hint="a checkpoint can be chosen only where it was evaluated", exit_code=2)
    return {"load_best_model_at_end": True, "metric_for_best_model": best_by, "greater_is_better": False}


def run_size(steps: int, batch_size: int, train_rows: int, seq_len: int) -> dict:
    """How much of its corpus a run covers: the tokens it reads (row slots, padding included, as `tokens_seen`), the
    corpus's training tokens counted alike, the passes (epochs) over the training rows, and all of it in words. A
    run's length is in rows, so the same --max-steps reads far fewer tokens when a layout turns long rows short."""
    tokens, corpus = steps * batch_size * seq_len, train_rows * seq_len
    epochs = steps * batch_size / train_rows if train_rows else 0.0
    return {"tokens": tokens, "corpus_tokens": corpus, "epochs": round(epochs, 4),
            "words": f"{steps:,} steps × {batch_size} rows × {seq_len} tokens = {tokens:,} tokens of {corpus:,} "
                     f"({epochs:.2f} epochs)"}
