"""Step 4: train from scratch or fine-tune with the IF-Guide penalty objective (paper Eq. 9).

The engine is the HF ``Trainer`` (it runs on one CPU, one GPU, and under ``torchrun`` /
``accelerate launch`` on many); this module adds only what IF-Guide needs:

- ``PenaltyTrainer``: ``compute_loss`` = :func:`objective.penalty_loss` with the mask column, normalised
  by the number of label tokens of the WHOLE optimizer step (all accumulated micro-batches on all
  processes). Two transformers 5.x traps are closed explicitly: the subclass counts the tokens itself
  and says its loss is already scaled for gradient accumulation (``loss_is_scaled_for_ga = True``), and
  it never lets the model see ``num_items_in_batch`` (``model_accepts_loss_kwargs = False``); the dataset
  is a torch ``Dataset`` of tensors so ``remove_unused_columns`` cannot drop the mask (and it is off).
- The checkpoint artifact: ``model/`` (``save_pretrained`` safetensors + the tokenizer), ``train_log.jsonl``,
  ``metrics.json`` and the intermediate ``trainer/checkpoint-N`` folders.
- Resume: intermediate checkpoints are written into the artifact's staging folder, which survives a
  crash; running the same command again resumes from the newest complete one.
- Defaults: the paper's reference settings, and a small ``tiny`` profile for the packaged corpus
  (``PROFILES``, the one place per-model defaults live).

Test hook: ``IFGUIDE_TEST_KILL_AFTER_STEP=k`` SIGKILLs the process at the end of optimizer step k
(before that step's checkpoint is saved), to test kill-and-resume. It is read only from the environment.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from contextlib import ExitStack, nullcontext
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .errors import IfguideError, check_range
from .progress import NULL
from .workspace import process_rank

KILL_HOOK_ENV = "IFGUIDE_TEST_KILL_AFTER_STEP"
MASK_FILE = "mask.safetensors"
SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup", "cosine_with_restarts", "polynomial")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
OPTIMIZER_STATE_FILES = ("optimizer.pt", "scheduler.pt", "scaler.pt")


# ---- configuration ---------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines the trained weights (it is the checkpoint artifact's reuse key).

    ``batch_size`` is the global batch in sequences per optimizer step (all processes, all
    accumulated micro-batches); tokens per step = batch_size × seq_len.
    """

    mode: str = "pretrain"  # pretrain (random init) | finetune (start from the given weights)
    lam: float = 1.0  # λ of Eq. 9: masked tokens get weight −λ
    learning_rate: float = 6e-4
    weight_decay: float = 0.01
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_epsilon: float = 1e-8
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.01
    max_grad_norm: float = 1.0  # 0 disables clipping
    batch_size: int = 256
    max_steps: int | None = None  # None: `epochs` passes over the data
    epochs: float = 1.0
    seed: int = 0
    precision: str = "auto"  # auto: bf16 autocast on CUDA (if supported), fp32 on CPU
    val_fraction: float = 0.0  # hold out this share of the corpus rows (the last ones) for validation
    eval_data: str | None = None  # or evaluate on this dataset instead (tokenized like the training data)
    eval_docs: int = 512  # at most this many validation rows


@dataclass(frozen=True)
class RunOptions:
    """How a run is executed and logged; does not change the result (not part of the artifact id)."""

    micro_batch_size: int | None = None  # per device; None: the profile's, capped by the batch
    save_steps: int = 250
    save_total_limit: int = 2
    logging_steps: int = 10
    eval_steps: int | None = None  # None: evaluate at save steps
    log_file: str | None = None  # also append the training log (JSON lines) here
    tensorboard: bool | None = None  # None: if tensorboard is installed
    keep_optimizer_state: bool = False  # keep optimizer/scheduler state of intermediate checkpoints in the artifact
    probe_docs: int = 256  # rows with masked tokens used for the masked/unmasked NLL in metrics.json


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
                         eval_data="tiny-heldout", eval_docs=256, micro_batch_size=32, save_steps=100, logging_steps=10),
        "finetune": dict(learning_rate=1e-3, weight_decay=4e-4, batch_size=32, max_steps=100,
                         eval_data="tiny-heldout", eval_docs=256, micro_batch_size=32, save_steps=50, logging_steps=10),
    },
}

# names accepted in a --config YAML file (and by `resolve_config`) besides the field names
ALIASES = {"lambda": "lam", "lr": "learning_rate", "wd": "weight_decay", "beta1": "adam_beta1", "beta2": "adam_beta2",
           "adam_eps": "adam_epsilon", "scheduler": "lr_scheduler", "warmup": "warmup_ratio", "grad_clip": "max_grad_norm",
           "micro_batch": "micro_batch_size", "steps": "max_steps"}
EXTRA_KEYS = ("batch_tokens", "seq_len", "profile")  # resolved against the corpus, not stored as such


def default_profile(model_ref: str, data_ref: str, base_profile: str | None = None) -> str:
    """`tiny` for the packaged model or data (or a checkpoint trained with it), else the paper's settings."""
    if base_profile in PROFILES:
        return base_profile
    return "tiny" if model_ref == "tiny" or data_ref.startswith("tiny") else "paper"


def load_yaml_config(path: str | os.PathLike) -> dict:
    from .yamlfile import load_yaml_mapping

    return load_yaml_mapping(path, "config file")


def normalise_keys(values: dict, source: str) -> dict:
    known = {f.name for f in fields(TrainConfig)} | {f.name for f in fields(RunOptions)} | set(EXTRA_KEYS)
    out = {}
    for key, value in values.items():
        k = str(key).replace("-", "_")
        k = ALIASES.get(k, k)
        if k not in known:
            raise IfguideError(f"unknown option {key!r} in {source}",
                               hint=f"known: {', '.join(sorted(known - {'mode'}))}", exit_code=2)
        out[k] = value
    return out


def resolve_config(mode: str, profile: str, yaml_values: dict | None, cli_values: dict,
                   seq_len: int) -> tuple[TrainConfig, RunOptions]:
    """Dataclass defaults < profile < YAML file < command-line options (None = not given)."""
    if profile not in PROFILES:
        raise IfguideError(f"unknown profile {profile!r}", hint=f"use one of {', '.join(PROFILES)}", exit_code=2)
    merged: dict[str, Any] = dict(PROFILES[profile][mode])
    merged.update(normalise_keys(yaml_values or {}, "the config file"))
    merged.update({k: v for k, v in normalise_keys(cli_values, "the options").items() if v is not None})
    batch_tokens = merged.pop("batch_tokens", None)
    merged.pop("seq_len", None)
    merged.pop("profile", None)
    if batch_tokens is not None:
        check_range("--batch-tokens", int(batch_tokens), seq_len)
        merged["batch_size"] = int(batch_tokens) // seq_len
    train_keys = {f.name for f in fields(TrainConfig)}
    tc = TrainConfig(**{k: v for k, v in merged.items() if k in train_keys and k != "mode"}, mode=mode)
    ro = RunOptions(**{k: v for k, v in merged.items() if k not in train_keys})
    validate(tc, ro)
    return tc, ro


def validate(tc: TrainConfig, ro: RunOptions) -> None:
    check_range("--lambda", tc.lam, 0)
    check_range("--lr", tc.learning_rate, 0, low_inclusive=False)
    check_range("--weight-decay", tc.weight_decay, 0)
    check_range("--beta1", tc.adam_beta1, 0, 1, high_inclusive=False)
    check_range("--beta2", tc.adam_beta2, 0, 1, high_inclusive=False)
    check_range("--adam-eps", tc.adam_epsilon, 0, low_inclusive=False)
    check_range("--warmup-ratio", tc.warmup_ratio, 0, 1, high_inclusive=False)
    check_range("--grad-clip", tc.max_grad_norm, 0)
    check_range("--batch-size", tc.batch_size, 1)
    if tc.max_steps is not None:
        check_range("--max-steps", tc.max_steps, 1)
    check_range("--epochs", tc.epochs, 0, low_inclusive=False)
    check_range("--val-fraction", tc.val_fraction, 0, 1, high_inclusive=False)
    check_range("--eval-docs", tc.eval_docs, 1)
    if tc.lr_scheduler not in SCHEDULERS:
        raise IfguideError(f"unknown --scheduler {tc.lr_scheduler!r}", hint=f"use one of {', '.join(SCHEDULERS)}", exit_code=2)
    if tc.precision not in PRECISIONS:
        raise IfguideError(f"unknown --precision {tc.precision!r}", hint=f"use one of {', '.join(PRECISIONS)}", exit_code=2)
    if ro.micro_batch_size is not None:
        check_range("--micro-batch-size", ro.micro_batch_size, 1)
    check_range("--save-steps", ro.save_steps, 1)
    check_range("--save-total-limit", ro.save_total_limit, 1)
    check_range("--logging-steps", ro.logging_steps, 1)
    if ro.eval_steps is not None:
        check_range("--eval-steps", ro.eval_steps, 1)


def resolve_precision(requested: str) -> str:
    """bf16 autocast only on CUDA; fp32 on CPU (bf16 on CPU is slow and changes the numerics)."""
    import torch

    cuda = torch.cuda.is_available()
    if requested == "auto":
        return "bf16" if cuda and torch.cuda.is_bf16_supported() else "fp32"
    if requested in ("bf16", "fp16") and not cuda:
        raise IfguideError(f"--precision {requested} needs a CUDA GPU", hint="use --precision fp32 (the CPU default)", exit_code=2)
    return requested


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


# ---- distributed helpers ---------------------------------------------------------------------
def _dist_state():
    """accelerate's process state (initialises torch.distributed under torchrun); None when single-process."""
    if process_rank()[1] <= 1:
        return None
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())  # CPU: gloo


def barrier() -> None:
    state = _dist_state()
    if state is not None:
        state.wait_for_everyone()


# ---- data ----------------------------------------------------------------------------------------
class TokenRows:
    """A torch Dataset over rows of the (N, T) corpus: input_ids, attention_mask, labels, loss_mask.

    Labels are the input ids with -100 on padding, built per row (no second copy of a large corpus).
    """

    def __init__(self, input_ids, attention_mask, rows, mask=None):
        self.input_ids = input_ids
        self.attention_mask = attention_mask
        self.rows = list(rows)
        self.mask = mask

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        from .objective import IGNORE_INDEX

        r = self.rows[i]
        ids, att = self.input_ids[r], self.attention_mask[r]
        item = {"input_ids": ids, "attention_mask": att, "labels": ids.masked_fill(att == 0, IGNORE_INDEX)}
        if self.mask is not None:
            item["loss_mask"] = self.mask[r]
        return item


def load_mask(art):
    """The boolean (N, T) mask of a mask artifact."""
    from safetensors.torch import load_file

    tensors = load_file(str(art.file(MASK_FILE)))
    if "mask" not in tensors:
        raise IfguideError(f"mask artifact {art.id} has no `mask` tensor in {MASK_FILE}",
                           hint="rebuild it with `ifguide mask ... --force`")
    return tensors["mask"].bool()


def check_mask_matches(mask_art, mask, dataset_art, corpus_shape) -> None:
    """The mask must index the same (docs × seq_len) tensor as the training data."""
    recorded = mask_art.config.get("dataset")
    if recorded and recorded != dataset_art.id:
        raise IfguideError(f"mask {mask_art.id} was computed on dataset {recorded}, but training uses dataset {dataset_art.id}",
                           hint="pass the --data (and --seq-len) the scores were computed on, or recompute the mask", exit_code=2)
    if tuple(mask.shape) != tuple(corpus_shape):
        raise IfguideError(f"mask {mask_art.id} has shape {tuple(mask.shape)} but dataset {dataset_art.id} has "
                           f"{tuple(corpus_shape)} (docs × seq_len)",
                           hint="the mask must come from scores on the same data, same order and --seq-len", exit_code=2)


def split_rows(n: int, tc: TrainConfig) -> tuple[list[int], list[int]]:
    """(training rows, validation rows): the last `val_fraction` of rows are held out (at most eval_docs)."""
    if tc.val_fraction <= 0 or tc.eval_data:
        return list(range(n)), []
    n_val = min(max(1, int(round(n * tc.val_fraction))), tc.eval_docs, n - 1)
    return list(range(n - n_val)), list(range(n - n_val, n))


# ---- evaluation helpers --------------------------------------------------------------------------
def token_nll(model, input_ids, attention_mask, mask=None, *, batch_size: int = 32, precision: str = "fp32") -> dict:
    """Next-token NLL summed over label tokens, split into masked / ordinary tokens (mask aligned with labels).

    Returns sums and counts: {"nll", "tokens", "masked_nll", "masked_tokens", "ordinary_nll", "ordinary_tokens"}.
    """
    import torch

    from .objective import labels_from_attention, penalty_terms

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    sums = torch.zeros(5, dtype=torch.float64)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
                if precision in ("bf16", "fp16") and device.type == "cuda" else nullcontext())
    with torch.no_grad(), autocast:
        for start in range(0, input_ids.shape[0], batch_size):
            ids = input_ids[start:start + batch_size].to(device)
            att = attention_mask[start:start + batch_size].to(device)
            m = None if mask is None else mask[start:start + batch_size].to(device)
            labels = labels_from_attention(ids, att)
            logits = model(input_ids=ids, attention_mask=att).logits
            t = penalty_terms(logits, labels, m, 0.0)
            sums += torch.tensor([t.masked_ce_sum + t.unmasked_ce_sum, t.num_label_tokens, t.masked_ce_sum, t.num_masked,
                                  t.unmasked_ce_sum], dtype=torch.float64)
    model.train(was_training)
    nll, tokens, mnll, mtok, onll = sums.tolist()
    return {"nll": nll, "tokens": int(tokens), "masked_nll": mnll, "masked_tokens": int(mtok),
            "ordinary_nll": onll, "ordinary_tokens": int(tokens - mtok)}


def _mean(total: float, count: int) -> float | None:
    return total / count if count else None


# ---- the Trainer --------------------------------------------------------------------------------
def _trainer_classes():
    """Build the Trainer subclass and callbacks lazily (transformers is imported only when training)."""
    import torch
    from transformers import Trainer, TrainerCallback

    from .objective import IGNORE_INDEX, penalty_terms

    class PenaltyTrainer(Trainer):
        """HF Trainer whose loss is the IF-Guide penalty objective, normalised per optimizer step."""

        # our loss is divided by the global label-token count of the optimizer step: never rescale it
        loss_is_scaled_for_ga = True

        def __init__(self, *args, lam: float = 1.0, **kwargs):
            super().__init__(*args, **kwargs)
            self.lam = float(lam)
            # the model must not receive num_items_in_batch (it would compute its own loss) and the parent's
            # token count (kept off) is replaced by ours in get_batch_samples
            self.model_accepts_loss_kwargs = False
            self._stats = torch.zeros(4, dtype=torch.float64)  # masked CE sum, masked n, ordinary CE sum, ordinary n

        def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
            super()._load_from_checkpoint(resume_from_checkpoint, model)
            # transformers 5.x saves some weights under legacy names (GPT-NeoX: lm_head.weight → embed_out.weight)
            # and the raw load_state_dict above silently skips them, so a resumed run would continue with a
            # freshly initialised output layer. Reload through from_pretrained, which maps the names.
            target = self.accelerator.unwrap_model(model if model is not None else self.model)
            if not (Path(resume_from_checkpoint) / "config.json").is_file():
                return
            dtype = next(target.parameters()).dtype
            reloaded = type(target).from_pretrained(resume_from_checkpoint, dtype=dtype)
            target.load_state_dict(reloaded.state_dict(), strict=True)
            del reloaded

        def get_batch_samples(self, epoch_iterator, num_batches, device):
            batch_samples, _ = super().get_batch_samples(epoch_iterator, num_batches, device)
            count = sum(int(b["labels"][:, 1:].ne(IGNORE_INDEX).sum()) for b in batch_samples)
            n = torch.tensor([count], dtype=torch.float32, device=device)
            if self.args.world_size > 1:
                n = self.accelerator.gather(n).sum()
            return batch_samples, n.reshape(())

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = inputs.pop("labels")
            mask = inputs.pop("loss_mask", None)
            outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"))
            terms = penalty_terms(outputs.logits, labels, mask, self.lam)
            if num_items_in_batch is None:  # evaluation: this batch's own mean
                loss = terms.loss_sum / terms.num_label_tokens.clamp(min=1)
            else:
                loss = terms.loss_sum / num_items_in_batch.clamp(min=1)
                if self.args.world_size > 1:
                    loss = loss * self.args.world_size  # DDP averages gradients over processes; we want their sum
            if model.training:
                n_ord = terms.num_label_tokens - terms.num_masked
                self._stats += torch.stack([terms.masked_ce_sum, terms.num_masked, terms.unmasked_ce_sum, n_ord]).double().cpu()
            return (loss, outputs) if return_outputs else loss

        def log(self, logs, start_time=None):
            if "loss" in logs and "eval_loss" not in logs:  # a training log: reached by every process
                stats = self._stats.to(self.args.device)
                if self.args.world_size > 1:
                    stats = self.accelerator.reduce(stats.float(), reduction="sum").double()
                msum, mn, osum, on = stats.tolist()
                if on:
                    logs["ce_ordinary"] = round(osum / on, 6)
                if mn:
                    logs["ce_masked"] = round(msum / mn, 6)
                    logs["masked_share"] = round(mn / (mn + on), 6)
                self._stats.zero_()
            super().log(logs, start_time)

    class ReportCallback(TrainerCallback):
        """Drives the progress reporter and writes the JSON-lines training log (main process only)."""

        def __init__(self, reporter, log_paths, tokens_per_step, resumed_step=0):
            self.reporter, self.log_paths = reporter, [Path(p) for p in log_paths]
            self.tokens_per_step = tokens_per_step
            self.resumed_step = resumed_step
            self.stack = ExitStack()
            self.task = None
            self.last_loss = None
            self.t_last = None
            self.step_last = 0
            self.tps = None

        def on_train_begin(self, args, state, control, **kw):
            if not state.is_world_process_zero:
                return
            self.task = self.stack.enter_context(self.reporter.task("training", total=state.max_steps))
            self.task.set(completed=state.global_step)
            self.t_last, self.step_last = time.perf_counter(), state.global_step

        def on_step_end(self, args, state, control, **kw):
            if self.task is None:
                return
            now = time.perf_counter()
            if now - self.t_last > 0.5 or state.global_step == state.max_steps:
                self.tps = (state.global_step - self.step_last) * self.tokens_per_step / max(now - self.t_last, 1e-9)
                self.t_last, self.step_last = now, state.global_step
            self.task.set(completed=state.global_step, info=self._info())

        def _info(self) -> str:
            parts = []
            if self.last_loss is not None:
                parts.append(f"loss {self.last_loss:.4f}")
            if self.tps is not None:
                parts.append(f"{self.tps:,.0f} tok/s")
            return " · ".join(parts)

        def on_log(self, args, state, control, logs=None, **kw):
            if not state.is_world_process_zero or not logs:
                return
            if "loss" in logs:
                self.last_loss = logs["loss"]
            record = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 6), **logs}
            if "loss" in logs and self.tps is not None:
                record["tokens_per_s"] = round(self.tps, 1)
            line = json.dumps(record, default=float) + "\n"
            for path in self.log_paths:
                with open(path, "a") as fh:
                    fh.write(line)

        def on_train_end(self, args, state, control, **kw):
            self.stack.close()
            self.task = None

    class KillHook(TrainerCallback):
        """Test hook: SIGKILL this process after optimizer step k (IFGUIDE_TEST_KILL_AFTER_STEP=k)."""

        def __init__(self, step: int):
            self.step = step

        def on_step_end(self, args, state, control, **kw):
            if state.global_step >= self.step:
                os.kill(os.getpid(), signal.SIGKILL)

    return PenaltyTrainer, ReportCallback, KillHook


def last_complete_checkpoint(trainer_dir: Path) -> Path | None:
    """The newest `checkpoint-N` with a trainer_state.json (written last, so the checkpoint is complete)."""
    if not trainer_dir.is_dir():
        return None
    found = []
    for entry in trainer_dir.iterdir():
        if entry.is_dir() and entry.name.startswith("checkpoint-") and entry.name.split("-")[-1].isdigit():
            if (entry / "trainer_state.json").is_file():
                found.append((int(entry.name.split("-")[-1]), entry))
    return max(found)[1] if found else None


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines written after the checkpoint a resumed run restarts from."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                keep.append(line)
        except ValueError:
            pass
    path.write_text("".join(line + "\n" for line in keep))


def _tensorboard_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None or importlib.util.find_spec("tensorboardX") is not None


# ---- the stage ------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    artifact: Any
    reused: bool
    config: TrainConfig
    options: RunOptions
    info: dict = field(default_factory=dict)


def prepare_model_ref(ws, model_ref: str, mode: str):
    """Resolve MODEL for `train` (architecture) or `finetune` (weights), with one clear line when it cannot be used."""
    from .models import resolve_model
    from .registry import MODELS

    path = Path(model_ref).expanduser()
    if not path.exists() and model_ref not in MODELS and len(model_ref) >= 4 and all(c in "0123456789abcdef" for c in model_ref):
        ws.resolve(model_ref, "checkpoints")  # an id that is not there: "no checkpoint ..." rather than "unknown model"
    mref = resolve_model(model_ref, ws)
    if mode == "finetune" and mref.source == "registry" and MODELS[mref.location].hub_id is None:
        raise IfguideError(f"{model_ref!r} has no pretrained weights to fine-tune",
                           hint=f"train it first (`ifguide train {model_ref} --data ...`) and fine-tune that checkpoint",
                           exit_code=2)
    return mref


def run_training(
    ws,
    *,
    mode: str,
    model_ref: str,
    data_ref: str,
    mask_ref: str | None = None,
    values: dict | None = None,
    config_file: str | None = None,
    profile: str | None = None,
    seq_len: int | None = None,
    force: bool = False,
    restart: bool = False,
    name: str | None = None,
    reporter=NULL,
) -> TrainResult:
    """`ifguide train` / `ifguide finetune`: resolve inputs, then build (or reuse) the checkpoint artifact."""
    if mode not in ("pretrain", "finetune"):
        raise ValueError(mode)
    values = dict(values or {})
    yaml_values = load_yaml_config(config_file) if config_file else {}
    yaml_norm = normalise_keys(yaml_values, "the config file")
    seq_len = seq_len if seq_len is not None else yaml_norm.get("seq_len")
    profile = profile or yaml_norm.get("profile")
    lam = values["lam"] if values.get("lam") is not None else yaml_norm.get("lam")
    if lam is not None:
        check_range("--lambda", float(lam), 0)  # fail before any work

    mref = prepare_model_ref(ws, model_ref, mode)
    base_profile = None
    if mref.source == "checkpoint":
        base = ws.by_id(mref.artifact_id)
        base_profile = base.config.get("profile") if base else None
    profile = profile or default_profile(model_ref if mref.source == "registry" else "", data_ref, base_profile)

    mask_art = None
    if mask_ref is not None:
        mask_art = ws.resolve(mask_ref, "masks")
    from .data import load_corpus, resolve_corpus

    ds_art, _ = resolve_corpus(ws, data_ref, mref, seq_len, reporter=reporter, barrier=barrier)

    corpus = load_corpus(ds_art)
    n_rows, T = corpus.shape
    mask = None
    if mask_art is not None:
        mask = load_mask(mask_art)
        check_mask_matches(mask_art, mask, ds_art, corpus.shape)

    tc, ro = resolve_config(mode, profile, yaml_values, values, T)
    warnings = []
    if mask_art is None and tc.lam != TrainConfig.lam:
        # λ weighs masked tokens only: without a mask it changes nothing, so it must not change the artifact id
        warnings.append("--lambda has no effect without --mask (plain language-model training)")
        tc = replace(tc, lam=TrainConfig.lam)
    eval_art = None
    if tc.eval_data:
        eval_art, _ = resolve_corpus(ws, tc.eval_data, mref, T, reporter=reporter, barrier=barrier)

    config = {
        "mode": mode,
        "model": mref.identity(),
        "tokenizer": mref.tokenizer,
        "family": mref.family,
        "profile": profile,
        "dataset": ds_art.id,
        "mask": mask_art.id if mask_art else None,
        "lambda": tc.lam if mask_art else None,
        "seed": tc.seed,
        "eval_dataset": eval_art.id if eval_art else None,
        "train": asdict(tc),
    }
    if config["family"] is None:
        from .models import model_family

        config["family"] = model_family(mref)
    parents = list(mref.parents) + [ds_art.id] + ([mask_art.id] if mask_art else [])

    def build(ctx):
        return _build_checkpoint(ctx, mref=mref, corpus=corpus, mask=mask, eval_art=eval_art, tc=tc, ro=ro,
                                 restart=restart, reporter=reporter, config=config)

    art, reused = ws.create("checkpoints", config, parents, build, name=name, force=force,
                            device=_device_name())
    return TrainResult(art, reused, tc, ro, {"dataset": ds_art.id, "mask": mask_art.id if mask_art else None,
                                             "profile": profile, "seq_len": T, "documents": n_rows, "warnings": warnings})


def _device_name() -> str:
    import torch

    world = process_rank()[1]
    if torch.cuda.is_available():
        dev = torch.cuda.get_device_name(0)
    else:
        dev = "cpu"
    return f"{world}× {dev}" if world > 1 else dev


def _build_checkpoint(ctx, *, mref, corpus, mask, eval_art, tc: TrainConfig, ro: RunOptions, restart: bool,
                      reporter, config: dict) -> dict:
    import torch

    from .data import load_corpus
    from .models import load_model, load_tokenizer

    barrier()  # rank 0 has prepared the staging folder (e.g. emptied it for --force) before anyone looks
    rank, world = process_rank()
    main = rank == 0
    staging: Path = ctx.staging
    trainer_dir = staging / "trainer"
    log_path = staging / "train_log.jsonl"
    metrics_path = staging / "metrics.json"

    if restart and main:  # --restart: forget the interrupted run
        import shutil

        for entry in list(staging.iterdir()):
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    barrier()
    if metrics_path.is_file() and (staging / "model" / "config.json").is_file():
        # a finished build whose publish was interrupted: nothing left to train
        return json.loads(metrics_path.read_text())["summary"] if main else {}
    resume = last_complete_checkpoint(trainer_dir)
    resumed_step = int(resume.name.split("-")[-1]) if resume else 0
    if main:
        if resume is None:
            log_path.unlink(missing_ok=True)
        else:
            _truncate_log(log_path, resumed_step)
    barrier()

    precision = resolve_precision(tc.precision)
    micro, accum = batch_layout(tc.batch_size, ro.micro_batch_size, world)
    n_rows, T = corpus.shape
    train_rows, val_rows = split_rows(n_rows, tc)
    if not train_rows:
        raise IfguideError("no training rows left after the validation split", exit_code=2)
    train_ds = TokenRows(corpus.input_ids, corpus.attention_mask, train_rows, mask)
    eval_ds = None
    if eval_art is not None:
        ev = load_corpus(eval_art)
        eval_ds = TokenRows(ev.input_ids, ev.attention_mask, range(min(tc.eval_docs, ev.shape[0])))
    elif val_rows:
        eval_ds = TokenRows(corpus.input_ids, corpus.attention_mask, val_rows)

    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()  # loading/saving bars would clutter stderr
    with ctx.timed("load_model"):
        model = load_model(mref, from_scratch=(tc.mode == "pretrain"), seed=tc.seed)
    tokenizer = load_tokenizer(mref)

    from transformers import PrinterCallback, TrainingArguments

    tensorboard = _tensorboard_available() if ro.tensorboard is None else ro.tensorboard
    if tensorboard and not _tensorboard_available():
        raise IfguideError("--tensorboard needs the tensorboard package", hint="pip install tensorboard", exit_code=2)
    eval_steps = ro.eval_steps or ro.save_steps
    args = TrainingArguments(
        output_dir=str(trainer_dir),
        seed=tc.seed,
        data_seed=tc.seed,
        learning_rate=tc.learning_rate,
        weight_decay=tc.weight_decay,
        adam_beta1=tc.adam_beta1,
        adam_beta2=tc.adam_beta2,
        adam_epsilon=tc.adam_epsilon,
        lr_scheduler_type=tc.lr_scheduler,
        warmup_steps=tc.warmup_ratio,  # a float < 1 is a ratio of the total steps
        max_grad_norm=tc.max_grad_norm,
        max_steps=tc.max_steps if tc.max_steps is not None else -1,
        num_train_epochs=tc.epochs,
        per_device_train_batch_size=micro,
        per_device_eval_batch_size=micro,
        gradient_accumulation_steps=accum,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not torch.cuda.is_available(),
        remove_unused_columns=False,  # it would silently drop the mask column
        dataloader_drop_last=True,
        dataloader_num_workers=0,
        logging_steps=ro.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=ro.save_steps,
        save_total_limit=ro.save_total_limit,
        eval_strategy="steps" if eval_ds is not None else "no",
        eval_steps=eval_steps if eval_ds is not None else None,
        report_to=["tensorboard"] if tensorboard else [],
        disable_tqdm=True,
        ddp_find_unused_parameters=False,
        ddp_backend="gloo" if world > 1 and not torch.cuda.is_available() else None,
    )
    PenaltyTrainer, ReportCallback, KillHook = _trainer_classes()
    log_paths = [log_path] + ([ro.log_file] if ro.log_file else [])
    callbacks = [ReportCallback(reporter if main else NULL, log_paths, tc.batch_size * T, resumed_step)]
    kill_at = os.environ.get(KILL_HOOK_ENV)
    if kill_at:
        callbacks.append(KillHook(int(kill_at)))
    trainer = PenaltyTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds, callbacks=callbacks,
                             lam=tc.lam)
    trainer.remove_callback(PrinterCallback)  # it prints every log dict on stdout (breaks --json)

    start = time.perf_counter()
    with ctx.timed("train"):
        output = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    elapsed = time.perf_counter() - start
    model_dir = staging / "model"
    trainer.save_model(str(model_dir))  # every process calls it; only the main one writes
    barrier()
    if not main:
        return {}

    tokenizer.save_pretrained(str(model_dir))
    (model_dir / "training_args.bin").unlink(missing_ok=True)  # a pickle; the manifest has the configuration
    if not ro.keep_optimizer_state:
        for ck in trainer_dir.glob("checkpoint-*"):
            for f in list(ck.iterdir()):
                if f.name in OPTIMIZER_STATE_FILES or f.name.startswith("rng_state"):
                    f.unlink()

    final = trainer.model
    with ctx.timed("final_eval"):
        metrics = _final_metrics(final, corpus, mask, eval_ds, train_rows, ro, precision, micro)
    steps_done = trainer.state.global_step
    history = [r for r in _read_log(log_path) if "loss" in r]
    summary = {
        "mode": tc.mode,
        "steps": steps_done,
        "resumed_from_step": resumed_step or None,
        "tokens_per_step": tc.batch_size * T,
        "tokens_seen": steps_done * tc.batch_size * T,
        "train_loss": round(float(output.training_loss), 6) if resumed_step == 0 else None,
        "final_loss": history[-1]["loss"] if history else None,
        **metrics,
        "train_seconds": round(elapsed, 2),
        "tokens_per_s": round((steps_done - resumed_step) * tc.batch_size * T / max(elapsed, 1e-9), 1),
        "precision": precision,
        "world_size": world,
        "micro_batch_size": micro,
        "grad_accumulation": accum,
        "lambda": tc.lam if mask is not None else None,
        "runtime": asdict(ro),
    }
    metrics_path.write_text(json.dumps({"summary": summary, "config": config}, indent=2, default=str))
    return summary


def _final_metrics(model, corpus, mask, eval_ds, train_rows, ro: RunOptions, precision: str, batch: int) -> dict:
    import torch

    out: dict[str, Any] = {}
    if eval_ds is not None:
        rows = torch.tensor(eval_ds.rows)
        s = token_nll(model, eval_ds.input_ids[rows], eval_ds.attention_mask[rows], batch_size=batch, precision=precision)
        if s["tokens"]:
            out["eval_loss"] = round(s["nll"] / s["tokens"], 6)
            out["eval_perplexity"] = round(math.exp(min(out["eval_loss"], 50.0)), 4)
            out["eval_tokens"] = s["tokens"]
    if mask is not None:
        rows = torch.tensor(train_rows)
        with_mask = rows[mask[rows].any(dim=1)][: ro.probe_docs]
        out["masked_tokens"] = int(mask[rows].sum())
        if len(with_mask):
            s = token_nll(model, corpus.input_ids[with_mask], corpus.attention_mask[with_mask], mask[with_mask],
                          batch_size=batch, precision=precision)
            out["masked_token_nll"] = _round(_mean(s["masked_nll"], s["masked_tokens"]))
            out["ordinary_token_nll"] = _round(_mean(s["ordinary_nll"], s["ordinary_tokens"]))
    return out


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 6)


def _read_log(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out
