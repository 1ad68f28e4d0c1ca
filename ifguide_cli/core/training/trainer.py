"""The HF Trainer with the IF-Guide penalty objective, and the callbacks of `ifguide train`.

Imported only when a run trains (it imports transformers). `PenaltyTrainer.compute_loss` is
:func:`objective.penalty_loss` with the mask column and the suppression mode (penalty −λ, filter 0),
normalised by the number of label tokens of the WHOLE optimizer step (all accumulated micro-batches on all
processes). Two transformers 5.x traps are closed explicitly: the subclass counts the tokens itself and says
its loss is already scaled for gradient accumulation (``loss_is_scaled_for_ga = True``), and it never lets
the model see ``num_items_in_batch`` (``model_accepts_loss_kwargs = False``); the dataset is a torch ``Dataset`` of
tensors so ``remove_unused_columns`` cannot drop the mask (and the trainer turns it off, whatever arguments it
is given: `ifguide_cli.api` hands it to users with their own ``TrainingArguments``).
"""

from __future__ import annotations

import inspect
import json
import time
from contextlib import ExitStack
from pathlib import Path

import torch
import transformers
from transformers import Trainer, TrainerCallback

from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.store.artifact_files import IGNORE_INDEX
from ifguide_cli.core.training.objective import penalty_terms

# the Trainer internals PenaltyTrainer relies on, with the parameters it calls them with
_OVERRIDDEN = {"get_batch_samples": ("self", "epoch_iterator", "num_batches", "device"),
               "_load_from_checkpoint": ("self", "resume_from_checkpoint", "model"),
               "_load_best_model": ("self",)}


def check_trainer_internals() -> None:
    """One line, not a wrong loss, if this transformers changed the internals PenaltyTrainer overrides."""
    changed = [name for name, params in _OVERRIDDEN.items() if _parameters(getattr(Trainer, name, None)) != params]
    if not hasattr(Trainer, "loss_is_scaled_for_ga"):
        changed.append("loss_is_scaled_for_ga")
    if changed:
        raise IfguideError(f"transformers {transformers.__version__} changed Trainer internals that ifguide overrides "
                           f"({', '.join(changed)})", hint="install transformers>=5,<6")


def _parameters(method) -> tuple[str, ...] | None:
    return tuple(inspect.signature(method).parameters) if callable(method) else None


class PenaltyTrainer(Trainer):
    """HF Trainer whose loss is the IF-Guide penalty objective, normalised per optimizer step."""

    # our loss is divided by the global label-token count of the optimizer step: never rescale it
    loss_is_scaled_for_ga = True

    def __init__(self, *args, lam: float = 1.0, suppression: str = "penalty", **kwargs):
        check_trainer_internals()
        super().__init__(*args, **kwargs)
        # a user's own TrainingArguments keep the default True, which would silently drop the `loss_mask` column
        self.args.remove_unused_columns = False
        self.lam, self.suppression = float(lam), suppression
        # the model must not receive num_items_in_batch (it would compute its own loss) and the parent's
        # token count (kept off) is replaced by ours in get_batch_samples
        self.model_accepts_loss_kwargs = False
        self._stats = torch.zeros(4, dtype=torch.float64)  # masked CE sum, masked n, ordinary CE sum, ordinary n
        self._non_finite_loss = None  # a device flag set by any non-finite training loss since the last check

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        self._reload_all_weights(resume_from_checkpoint, model)

    def _load_best_model(self):
        super()._load_best_model()  # --best-checkpoint: the same raw load as a resume, the same repair
        self._reload_all_weights(self.state.best_model_checkpoint)

    def _reload_all_weights(self, folder, model=None):
        """Load every weight of checkpoint `folder` into the model, legacy-named ones included.

        transformers 5.x saves some weights under legacy names (GPT-NeoX: lm_head.weight → embed_out.weight)
        and the Trainer's raw, non-strict load_state_dict silently skips them, so a resumed run would continue
        (and a best-checkpoint run would end) with another output layer. from_pretrained maps the names.
        """
        target = self.accelerator.unwrap_model(model if model is not None else self.model)
        if not (Path(folder) / "config.json").is_file():
            return
        dtype = next(target.parameters()).dtype
        reloaded = type(target).from_pretrained(folder, dtype=dtype)
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
        terms = penalty_terms(outputs.logits, labels, mask, self.lam, self.suppression)
        if num_items_in_batch is None:  # evaluation: this batch's own mean
            loss = terms.loss_sum / terms.num_label_tokens.clamp(min=1)
        else:
            loss = terms.loss_sum / num_items_in_batch.clamp(min=1)
            if self.args.world_size > 1:
                loss = loss * self.args.world_size  # DDP averages gradients over processes; we want their sum
        if model.training:
            bad = ~torch.isfinite(loss.detach())  # kept on the device: read once per check, not once per batch
            self._non_finite_loss = bad if self._non_finite_loss is None else self._non_finite_loss | bad
            n_ord = terms.num_label_tokens - terms.num_masked
            self._stats += torch.stack([terms.masked_ce_sum, terms.num_masked, terms.unmasked_ce_sum, n_ord]).double().cpu()
        return (loss, outputs) if return_outputs else loss

    def non_finite(self, *, weights: bool) -> str | None:
        """What became non-finite since the last call (the training loss; with `weights`, a weight too), agreed
        by every process; None when all is finite."""
        flags = torch.zeros(2, device=self.args.device)
        if self._non_finite_loss is not None:
            flags[0] = self._non_finite_loss.float()
            self._non_finite_loss = None
        if weights:
            assert self.model is not None, "the trainer is built with its model"
            finite = torch.stack([torch.isfinite(p.detach()).all() for p in self.model.parameters()]).all()
            flags[1] = (~finite).float().to(flags.device)
        if self.args.world_size > 1:
            flags = self.accelerator.reduce(flags, reduction="sum")
        loss, weight = (bool(v) for v in flags.tolist())
        return "the training loss" if loss else ("a weight" if weight else None)

    def log(self, logs, start_time=None):
        if "loss" in logs and "eval_loss" not in logs:  # a training log: reached by every process
            logs.update(self._token_ce_since_last_log())
        super().log(logs, start_time)

    def _token_ce_since_last_log(self) -> dict:
        """Mean CE of ordinary and of masked tokens (summed over processes) since the last training log."""
        stats = self._stats.to(self.args.device)
        if self.args.world_size > 1:
            stats = self.accelerator.reduce(stats.float(), reduction="sum").double()
        msum, mn, osum, on = stats.tolist()
        self._stats.zero_()
        out = {}
        if on:
            out["ce_ordinary"] = round(osum / on, 6)
        if mn:
            out["ce_masked"] = round(msum / mn, 6)
            out["masked_share"] = round(mn / (mn + on), 6)
        return out


class ReportCallback(TrainerCallback):
    """Drives the progress reporter and writes the JSON-lines training log (main process only)."""

    def __init__(self, reporter, log_paths, tokens_per_step):
        self.reporter, self.log_paths = reporter, [Path(p) for p in log_paths]
        self.tokens_per_step = tokens_per_step
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
            try:
                with open(path, "a") as fh:
                    fh.write(line)
            except OSError as exc:  # a write error names no file: give it the path, for the one-line error
                raise OSError(exc.errno, exc.strerror, str(path)) from None

    def on_train_end(self, args, state, control, **kw):
        self.stack.close()
        self.task = None


class NonFiniteGuard(TrainerCallback):
    """Stops a run whose loss or weights became NaN or infinite before anything of it is saved or published.

    A divergent run (`--lr 50`, `--lambda 1e300`) would otherwise finish "successfully" with NaN weights. The check
    runs at every step that logs, evaluates or saves, and at the last one — before the Trainer's save of that step —
    so every checkpoint in staging holds finite weights: the last of them stays resumable, and nothing is published.
    """

    def __init__(self, trainer: PenaltyTrainer):
        self.trainer = trainer

    def on_step_end(self, args, state, control, **kw):
        last = state.global_step >= state.max_steps
        if not (control.should_log or control.should_save or control.should_evaluate or last):
            return
        what = self.trainer.non_finite(weights=control.should_save or last)
        if what is not None:
            raise NonFiniteTraining(what, state.global_step, self.trainer.lam)


class NonFiniteTraining(IfguideError):
    """The one-line error of a diverged run: what went non-finite, when, and what to change."""

    def __init__(self, what: str, step: int, lam: float):
        super().__init__(f"{what} became non-finite (NaN or infinite) by optimizer step {step}: training diverged and "
                         "no checkpoint was published",
                         hint=f"lower --lr{' or --lambda' if lam else ''} (or use --grad-clip); the last saved training "
                              "state is kept, and the same command resumes from it")

