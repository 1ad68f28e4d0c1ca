"""Building the checkpoint artifact: resume state → training data → the Trainer's arguments → train → finalize.

The artifact holds ``model/`` (``save_pretrained`` safetensors + the tokenizer), ``train_log.jsonl``,
``metrics.json`` and the intermediate ``trainer/checkpoint-N`` folders. Intermediate checkpoints are
written into the artifact's staging folder, which survives a crash: running the same command again
resumes from the newest complete one (``--restart`` discards it).

Every process of a distributed run builds (the Trainer shards the batches); rank 0 alone writes the
shared files, and barriers order the two. Imported only when a run trains (it imports transformers).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import transformers
from transformers import PrinterCallback, TrainerCallback, TrainingArguments

from ifguide_cli.core.config import resolve_precision, torch_dtype
from ifguide_cli.core.data import load_corpus
from ifguide_cli.core.data.rows import CorpusRows
from ifguide_cli.core.dist import barrier, rank_and_world, resolve_device
from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.lora import ADAPTER_DIR, apply_lora, lora_summary, save_adapter
from ifguide_cli.core.models import load_model, load_tokenizer
from ifguide_cli.core.progress import NULL
from ifguide_cli.core.training.config import TrainConfig, batch_layout, best_checkpoint_arguments, check_weights_dtype, split_rows
from ifguide_cli.core.training.metrics import final_metrics
from ifguide_cli.core.training.trackers import resolve_trackers, send_summary
from ifguide_cli.core.training.trainer import NonFiniteGuard, PenaltyTrainer, ReportCallback

# Extension point for code that embeds ifguide: factories of extra transformers `TrainerCallback`s, each called once
# per training run; the callbacks are added after ifguide's own, in this order (so their `on_step_end` runs before
# the Trainer saves that step's checkpoint). Append to it in the process that runs the command.
EXTRA_CALLBACKS: list[Callable[[], TrainerCallback]] = []
OPTIMIZER_STATE_FILES = ("optimizer.pt", "scheduler.pt", "scaler.pt")


@dataclass(frozen=True)
class Staging:
    """The files of a checkpoint artifact in its staging folder."""

    root: Path

    @property
    def trainer_dir(self) -> Path:
        return self.root / "trainer"

    @property
    def log(self) -> Path:
        return self.root / "train_log.jsonl"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def model_dir(self) -> Path:
        return self.root / "model"


@dataclass(frozen=True)
class Resume:
    """Where this build starts: a complete intermediate checkpoint (or none), or an already finished build."""

    checkpoint: Path | None = None
    step: int = 0
    finished: dict | None = None  # the summary of a finished build whose publish was interrupted


@dataclass(frozen=True)
class Layout:
    """How the global batch runs on this machine."""

    precision: str
    micro: int  # sequences per device per forward
    accum: int  # gradient-accumulation steps


@dataclass(frozen=True)
class TrainingData:
    train: CorpusRows
    eval: CorpusRows | None
    probe_rows: list[int]  # the training split before --suppression drop: where the masked tokens are probed


def build_checkpoint(ctx, plan, config: dict) -> dict:
    """Train (or resume) `plan` (the stage's `TrainInputs`) into `ctx.staging`; the summary for the manifest (rank 0;
    {} elsewhere). `config`: the artifact's config, kept in metrics.json beside the summary."""
    return CheckpointBuild(ctx, plan, config).run()


class CheckpointBuild:
    """One build of a checkpoint artifact in its staging folder."""

    def __init__(self, ctx, plan, config: dict):
        self.ctx, self.plan, self.config = ctx, plan, config
        self.tc: TrainConfig = plan.train
        self.staging = Staging(ctx.staging)
        rank, self.world = rank_and_world()
        self.main = rank == 0
        self.fsdp_enabled = False  # set once the Trainer exists: did accelerate shard the model (FSDP)?

    def run(self) -> dict:
        resume = self.resume_state()
        if resume.finished is not None:
            return resume.finished
        device = resolve_device("auto")
        precision = resolve_precision(self.tc.precision, device)
        check_weights_dtype(self.tc.weights_dtype, device, precision)
        layout = Layout(precision, *batch_layout(self.tc.batch_size, self.plan.run.micro_batch_size, self.world))
        data = self.training_data()
        model, tokenizer = self.load_model()
        trainer = self.trainer(self.training_arguments(layout, has_eval=data.eval is not None), model, data)
        start = time.perf_counter()
        with self.ctx.timed("train"):
            output = trainer.train(resume_from_checkpoint=str(resume.checkpoint) if resume.checkpoint else None)
        elapsed = time.perf_counter() - start
        if trainer.state.global_step == 0:  # never publish the initial weights as a trained checkpoint
            raise IfguideError("training took 0 optimizer steps; no checkpoint was written",
                               hint="lower --batch-size or give more data (see the dataset's rows)", exit_code=2)
        self.save_weights(trainer)
        barrier()
        if not self.main:
            return {}
        return self.finalize(trainer, tokenizer, layout, data, resume, output.training_loss, elapsed)

    # ---- resume state ----------------------------------------------------------------------------
    def resume_state(self) -> Resume:
        """Forget the interrupted run (--restart), or find its newest complete checkpoint and cut its log there."""
        barrier()  # rank 0 has prepared the staging folder (e.g. emptied it for --force) before anyone looks
        if self.plan.restart and self.main:
            for entry in list(self.staging.root.iterdir()):
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        barrier()
        if self.staging.metrics.is_file() and (self.staging.model_dir / "config.json").is_file():
            # a finished build whose publish was interrupted: nothing left to train
            return Resume(finished=json.loads(self.staging.metrics.read_text())["summary"] if self.main else {})
        checkpoint = last_complete_checkpoint(self.staging.trainer_dir)
        if checkpoint is not None:
            check_resumable(checkpoint)
        step = int(checkpoint.name.split("-")[-1]) if checkpoint else 0
        if self.main:
            if checkpoint is None:
                self.staging.log.unlink(missing_ok=True)
            else:
                truncate_log(self.staging.log, step)
        barrier()
        return Resume(checkpoint, step)

    # ---- inputs ------------------------------------------------------------------------------------
    def training_data(self) -> TrainingData:
        """The training rows (with the mask) and the validation rows: held-out corpus rows or another dataset.

        --suppression drop trains on the rows its selection kept, without a mask (none of them holds a masked token).
        """
        corpus, drop = self.plan.corpus, self.plan.drop
        train_rows, val_rows = split_rows(corpus.shape[0], self.tc)
        if not train_rows:
            raise IfguideError("no training rows left after the validation split", exit_code=2)
        train = (CorpusRows(corpus.input_ids, corpus.attention_mask, rows=train_rows, mask=self.plan.mask) if drop is None
                 else CorpusRows(corpus.input_ids, corpus.attention_mask, rows=drop.kept))
        evaluation: CorpusRows | None
        if self.plan.eval_art is not None:
            ev = load_corpus(self.plan.eval_art)
            evaluation = CorpusRows(ev.input_ids, ev.attention_mask, rows=range(min(self.tc.eval_docs, ev.shape[0])))
        else:
            evaluation = CorpusRows(corpus.input_ids, corpus.attention_mask, rows=val_rows) if val_rows else None
        return TrainingData(train, evaluation, train_rows)

    def load_model(self):
        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()  # loading/saving bars would clutter stderr
        with self.ctx.timed("load_model"):
            model = load_model(self.plan.mref, from_scratch=(self.tc.mode == "pretrain"), seed=self.tc.seed,
                               dtype=torch_dtype(self.tc.weights_dtype))
            if self.tc.lora_rank:
                model = apply_lora(model, self.tc.lora_rank, self.tc.lora_alpha, self.tc.lora_targets, self.tc.seed)
        return model, load_tokenizer(self.plan.mref)

    def save_weights(self, trainer) -> None:
        """The trained weights: the full model, or for LoRA the adapter alone (with the base's config in model/)."""
        if not self.tc.lora_rank:
            trainer.save_model(str(self.staging.model_dir))  # every process calls it; only the main one writes
        elif self.main:
            save_adapter(trainer.model, self.staging.root / ADAPTER_DIR)
            trainer.model.get_base_model().config.save_pretrained(str(self.staging.model_dir))

    # ---- the Trainer ------------------------------------------------------------------------------
    def training_arguments(self, layout: Layout, *, has_eval: bool) -> TrainingArguments:
        """TrainingArguments of the configuration; `warmup_steps` < 1 is a ratio of the total steps."""
        tc, ro = self.tc, self.plan.run
        trackers = resolve_trackers(ro.report_to)
        best = best_checkpoint_arguments(tc.best_checkpoint, ro.eval_steps or ro.save_steps, ro.save_steps, has_eval)
        return TrainingArguments(
            output_dir=str(self.staging.trainer_dir),
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
            per_device_train_batch_size=layout.micro,
            per_device_eval_batch_size=layout.micro,
            gradient_accumulation_steps=layout.accum,
            bf16=layout.precision == "bf16",
            fp16=layout.precision == "fp16",
            use_cpu=not torch.cuda.is_available(),
            remove_unused_columns=False,  # it would silently drop the mask column
            dataloader_drop_last=True,
            dataloader_num_workers=0,
            logging_steps=ro.logging_steps,
            logging_first_step=True,
            save_strategy="steps",
            save_steps=ro.save_steps,
            save_total_limit=ro.save_total_limit,
            eval_strategy="steps" if has_eval else "no",
            eval_steps=(ro.eval_steps or ro.save_steps) if has_eval else None,
            report_to=trackers,
            run_name=self.plan.name or self.ctx.id,
            **_checkpointing_argument(ro.gradient_checkpointing),
            fsdp=ro.fsdp,
            disable_tqdm=True,
            ddp_find_unused_parameters=False,
            ddp_backend="gloo" if self.world > 1 and not torch.cuda.is_available() else None,
            **best,
        )

    def trainer(self, args: TrainingArguments, model, data: TrainingData) -> PenaltyTrainer:
        """The PenaltyTrainer with our log/progress callback, then the embedding code's `EXTRA_CALLBACKS`."""
        # the user's file first: one that cannot be written stops the run before its first line is in staging
        log_paths = ([self.plan.run.log_file] if self.plan.run.log_file else []) + [self.staging.log]
        tokens_per_step = self.tc.batch_size * self.plan.corpus.shape[1]
        callbacks: list[TrainerCallback] = [ReportCallback(self.plan.reporter if self.main else NULL, log_paths, tokens_per_step)]
        callbacks += [make() for make in EXTRA_CALLBACKS]
        trainer = PenaltyTrainer(model=model, args=args, train_dataset=data.train, eval_dataset=data.eval,
                                 callbacks=callbacks, lam=self.tc.lam, suppression=self.tc.suppression)
        trainer.remove_callback(PrinterCallback)  # it prints every log dict on stdout (breaks --json)
        trainer.add_callback(NonFiniteGuard(trainer))
        return trainer

    # ---- finalize ------------------------------------------------------------------------------------
    def finalize(self, trainer, tokenizer, layout: Layout, data: TrainingData, resume: Resume, training_loss: float,
                 elapsed: float) -> dict:
        """Complete the model folder, drop what a finished run does not need, write metrics.json (rank 0)."""
        tokenizer.save_pretrained(str(self.staging.model_dir))
        (self.staging.model_dir / "training_args.bin").unlink(missing_ok=True)  # a pickle; the manifest has the config
        if not self.plan.run.keep_optimizer_state:
            drop_optimizer_state(self.staging.trainer_dir)
        with self.ctx.timed("final_eval"):
            metrics = final_metrics(trainer.model, self.plan.corpus, self.plan.mask, data.eval, data.probe_rows,
                                    self.plan.run.probe_docs, layout.precision, layout.micro)
        self.fsdp_enabled = bool(getattr(trainer, "is_fsdp_enabled", False))
        summary = self.summary(trainer.state.global_step, resume.step, training_loss, elapsed, metrics, layout)
        summary.update(_coverage(summary["steps"], self.tc.batch_size, len(data.train), self.plan.corpus.shape[1]))
        if self.tc.lora_rank:
            summary.update(lora_summary(trainer.model, self.tc.lora_rank, self.tc.lora_alpha))
        summary.update(chosen_checkpoint(trainer.state, self.tc.best_checkpoint))
        send_summary(trainer, summary)
        self.staging.metrics.write_text(json.dumps({"summary": summary, "config": self.config}, indent=2, default=str))
        return summary

    def summary(self, steps: int, resumed_step: int, training_loss: float, elapsed: float, metrics: dict,
                layout: Layout) -> dict:
        tokens_per_step = self.tc.batch_size * self.plan.corpus.shape[1]
        history = [r for r in read_log(self.staging.log) if "loss" in r]
        return {
            "mode": self.tc.mode,
            "steps": steps,
            "resumed_from_step": resumed_step or None,
            "tokens_per_step": tokens_per_step,
            "tokens_seen": steps * tokens_per_step,
            "train_loss": round(float(training_loss), 6) if resumed_step == 0 else None,
            "final_loss": history[-1]["loss"] if history else None,
            **metrics,
            "train_seconds": round(elapsed, 2),
            "tokens_per_s": round((steps - resumed_step) * tokens_per_step / max(elapsed, 1e-9), 1),
            "precision": layout.precision,
            "weights_dtype": self.tc.weights_dtype,
            "world_size": self.world,
            "sharding": "fsdp" if self.fsdp_enabled else None,
            "micro_batch_size": layout.micro,
            "grad_accumulation": layout.accum,
            "suppression": self.tc.suppression,
            "lambda": self.tc.lam if self.plan.mask is not None and self.tc.suppression == "penalty" else None,
            **(self.plan.drop.summary() if self.plan.drop is not None else {}),
            "validation": self.plan.validation,
            "runtime": asdict(self.plan.run),
        }


def chosen_checkpoint(state, best_by: str | None) -> dict:
    """With --best-checkpoint, which step the model is from and its metric (for the summary); {} without."""
    if best_by is None:
        return {}
    folder = state.best_model_checkpoint
    step = int(Path(folder).name.split("-")[-1]) if folder else None
    return {"best_checkpoint": {"by": best_by, "step": step, best_by: state.best_metric}}


def last_complete_checkpoint(trainer_dir: Path) -> Path | None:
    """The newest `checkpoint-N` with a trainer_state.json (written last, so the checkpoint is complete)."""
    if not trainer_dir.is_dir():
        return None
    found = [(int(entry.name.split("-")[-1]), entry) for entry in trainer_dir.iterdir()
             if entry.is_dir() and entry.name.startswith("checkpoint-") and entry.name.split("-")[-1].isdigit()
             and (entry / "trainer_state.json").is_file()]
    return max(found)[1] if found else None


def check_resumable(checkpoint: Path) -> None:
    """A saved state that cannot be loaded (a truncated optimizer.pt) is one line naming it, not the loader's crash."""
    from ifguide_cli.core.store.file_integrity import damage

    for path in sorted(p for p in checkpoint.iterdir() if p.is_file()):
        problem = damage(path)
        if problem:
            raise IfguideError(f"cannot resume the interrupted training from {path}: {problem}",
                               hint="run the same command with --restart to start this training over")


def drop_optimizer_state(trainer_dir: Path) -> None:
    """Delete the optimizer/scheduler/RNG state of the intermediate checkpoints (a finished run needs no resume)."""
    for checkpoint in trainer_dir.glob("checkpoint-*"):
        for f in list(checkpoint.iterdir()):
            if f.name in OPTIMIZER_STATE_FILES or f.name.startswith("rng_state"):
                f.unlink()


def read_log(path: Path) -> list[dict]:
    """The records of a JSON-lines training log (a torn line is skipped)."""
    if not path.is_file():
        return []
    return [r for r in map(_record, path.read_text().splitlines()) if r is not None]


def truncate_log(path: Path, step: int) -> None:
    """Drop log lines written after the checkpoint a resumed run restarts from (and torn ones)."""
    if not path.is_file():
        return
    keep = [line for line in path.read_text().splitlines() if (r := _record(line)) is not None and r.get("step", 0) <= step]
    path.write_text("".join(line + "\n" for line in keep))


def _record(line: str) -> dict | None:
    try:
        return json.loads(line)
    except ValueError:
        return None


def _coverage(steps: int, batch_size: int, train_rows: int, seq_len: int) -> dict:
    """The summary's `corpus_tokens` (of the training rows) and `epochs` (passes over them) of the run."""
    from ifguide_cli.core.training.config import run_size

    size = run_size(steps, batch_size, train_rows, seq_len)
    return {"corpus_tokens": size["corpus_tokens"], "epochs": size["epochs"]}


def _checkpointing_argument(on: bool) -> dict:
    """Gradient checkpointing under the argument name this transformers uses (5.x renamed it; the old name warns)."""
    if not on:
        return {}
    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    return {"activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing": True}
