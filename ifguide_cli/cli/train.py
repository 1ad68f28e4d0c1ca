"""`ifguide train` and `ifguide finetune`: LM training with the IF-Guide penalty objective."""

from __future__ import annotations

from typing import Optional

import typer

from . import common

_EPILOG = (
    "Defaults: the paper's reference settings (AdamW β=(0.9, 0.95), cosine, warm-up 1%, grad-clip 1.0, "
    "256 × 2048-token batches, lr 6e-4 pre-training / 6e-5 fine-tuning with wd 4e-4), or the small `tiny` profile "
    "for the packaged tiny model/data. Precedence: profile < --config FILE.yaml < options. "
    "A killed run resumes from its newest intermediate checkpoint when the same command is run again "
    "(--restart discards it). Multi-GPU: `torchrun --nproc-per-node N -m ifguide_cli train ...`."
)


_MODEL_HELP = {
    "pretrain": "Architecture: registry name (`tiny`, `pythia-160m`…), a folder with config.json, a hub id, "
                "or a checkpoint (its config; weights re-initialised).",
    "finetune": "Weights to start from: checkpoint artifact, local save_pretrained folder, hub id, "
                "or a registry model with pretrained weights.",
}
_SEED_HELP = {"pretrain": "Seed of init, data order and dropout [default: 0].",
              "finetune": "Seed of data order and dropout [default: 0]."}


def _command(mode: str):
    """The `train` / `finetune` command: one option list, two modes."""

    def command(
        model: str = typer.Argument(..., help=_MODEL_HELP[mode]),
        data: str = typer.Option(..., "--data", "-d", help="Training data: registry dataset, local file, hub id, or dataset artifact."),
        mask: Optional[str] = typer.Option(None, "--mask", "-m", help="Mask artifact (toxic tokens of this data) to penalise."),
        lam: Optional[float] = typer.Option(None, "--lambda", help="Penalty strength λ ≥ 0: masked tokens get weight −λ. [default: 1.0]"),
        config: Optional[str] = typer.Option(None, "--config", help="YAML file of option: value (field names or option names)."),
        profile: Optional[str] = typer.Option(None, "--profile", help="Default profile: paper | tiny [default: by model/data]."),
        lr: Optional[float] = typer.Option(None, "--lr", help="Peak learning rate."),
        weight_decay: Optional[float] = typer.Option(None, "--weight-decay", help="AdamW weight decay."),
        beta1: Optional[float] = typer.Option(None, "--beta1", help="AdamW β1 [default: 0.9]."),
        beta2: Optional[float] = typer.Option(None, "--beta2", help="AdamW β2 [default: 0.95]."),
        adam_eps: Optional[float] = typer.Option(None, "--adam-eps", help="AdamW ε [default: 1e-8]."),
        scheduler: Optional[str] = typer.Option(None, "--scheduler", help="LR schedule [default: cosine]."),
        warmup_ratio: Optional[float] = typer.Option(None, "--warmup-ratio", help="Warm-up share of the steps [default: 0.01]."),
        grad_clip: Optional[float] = typer.Option(None, "--grad-clip", help="Max gradient norm, 0 = off [default: 1.0]."),
        batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Global batch in sequences per optimizer step."),
        batch_tokens: Optional[int] = typer.Option(None, "--batch-tokens", help="Global batch in tokens (÷ seq-len = --batch-size)."),
        micro_batch_size: Optional[int] = typer.Option(None, "--micro-batch-size", help="Sequences per device per forward (gradient accumulation fills the batch)."),
        max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Optimizer steps (else --epochs over the data)."),
        epochs: Optional[float] = typer.Option(None, "--epochs", help="Passes over the data when --max-steps is not set."),
        seq_len: Optional[int] = typer.Option(None, "--seq-len", help="Tokens per row of the corpus [default: 64 tiny, 2048 else]."),
        seed: Optional[int] = typer.Option(None, "--seed", help=_SEED_HELP[mode]),
        precision: Optional[str] = typer.Option(None, "--precision", help="auto | bf16 | fp16 | fp32 [default: auto = bf16 on CUDA, fp32 on CPU]."),
        val_fraction: Optional[float] = typer.Option(None, "--val-fraction", help="Hold out this share of rows for the eval loss."),
        eval_data: Optional[str] = typer.Option(None, "--eval-data", help="Evaluate on this dataset instead of held-out rows."),
        eval_docs: Optional[int] = typer.Option(None, "--eval-docs", help="At most this many validation rows."),
        eval_steps: Optional[int] = typer.Option(None, "--eval-steps", help="Evaluate every N steps [default: --save-steps]."),
        save_steps: Optional[int] = typer.Option(None, "--save-steps", help="Write an intermediate (resumable) checkpoint every N steps."),
        save_total_limit: Optional[int] = typer.Option(None, "--save-total-limit", help="Keep at most N intermediate checkpoints."),
        logging_steps: Optional[int] = typer.Option(None, "--logging-steps", help="Log loss every N steps."),
        log_file: Optional[str] = typer.Option(None, "--log-file", help="Also append the training log (JSON lines) to this file."),
        tensorboard: Optional[bool] = typer.Option(None, "--tensorboard/--no-tensorboard", help="TensorBoard logs in the artifact [default: if installed]."),
        keep_optimizer_state: bool = typer.Option(False, "--keep-optimizer-state", help="Keep optimizer state in the intermediate checkpoints."),
        resume: bool = typer.Option(True, "--resume/--restart", help="Continue an interrupted run of the same command from its newest checkpoint, or start over."),
        name: Optional[str] = typer.Option(None, "--name", help="A name for the checkpoint artifact."),
        force: bool = typer.Option(False, "--force", help="Retrain even if an identical checkpoint exists."),
    ) -> None:
        _run(mode, locals())

    return command


def register(app: typer.Typer) -> None:
    app.command("train", help="Train a model from scratch (registry name, config folder or checkpoint architecture), "
                              "optionally penalising masked toxic tokens.", epilog=_EPILOG)(
        common.handles_errors(_command("pretrain")))
    app.command("finetune", help="Fine-tune a pretrained model or checkpoint, optionally penalising masked toxic tokens.",
                epilog=_EPILOG)(common.handles_errors(_command("finetune")))


def _run(mode: str, opts: dict) -> None:
    from ..core.training import run_training
    from ..core.workspace import is_main_process

    values = {
        "lam": opts["lam"], "learning_rate": opts["lr"], "weight_decay": opts["weight_decay"], "adam_beta1": opts["beta1"],
        "adam_beta2": opts["beta2"], "adam_epsilon": opts["adam_eps"], "lr_scheduler": opts["scheduler"],
        "warmup_ratio": opts["warmup_ratio"], "max_grad_norm": opts["grad_clip"], "batch_size": opts["batch_size"],
        "batch_tokens": opts["batch_tokens"], "micro_batch_size": opts["micro_batch_size"], "max_steps": opts["max_steps"],
        "epochs": opts["epochs"], "seed": opts["seed"], "precision": opts["precision"], "val_fraction": opts["val_fraction"],
        "eval_data": opts["eval_data"], "eval_docs": opts["eval_docs"], "eval_steps": opts["eval_steps"],
        "save_steps": opts["save_steps"], "save_total_limit": opts["save_total_limit"], "logging_steps": opts["logging_steps"],
        "log_file": opts["log_file"], "tensorboard": opts["tensorboard"],
        "keep_optimizer_state": opts["keep_optimizer_state"] or None,
    }
    result = run_training(
        common.workspace(), mode=mode, model_ref=opts["model"], data_ref=opts["data"], mask_ref=opts["mask"], values=values,
        config_file=opts["config"], profile=opts["profile"], seq_len=opts["seq_len"], force=opts["force"],
        restart=not opts["resume"], name=opts["name"], reporter=common.reporter(),
    )
    if not is_main_process():  # other ranks of a distributed run: rank 0 reports
        return
    for warning in result.info.get("warnings", []):
        common.info(f"[yellow]warning:[/] {warning}")
    art = result.artifact
    common.emit(common.artifact_payload(art, result.reused, model_dir=str(art.path / "model"), config=art.config),
                _render(mode, art, result))


_ROWS = (  # summary fields shown in the table, in order (absent/None ones are skipped)
    ("steps", "steps"), ("resumed_from_step", "resumed from step"), ("tokens_seen", "tokens seen"),
    ("final_loss", "final train loss"), ("eval_loss", "eval loss"), ("eval_perplexity", "eval perplexity"),
    ("masked_tokens", "masked tokens"), ("masked_token_nll", "masked-token NLL"), ("ordinary_token_nll", "ordinary-token NLL"),
    ("tokens_per_s", "tokens/s"), ("precision", "precision"), ("world_size", "processes"), ("train_seconds", "train seconds"),
)


def _render(mode: str, art, result):
    def render(console):
        s = art.summary
        rows = {"id": art.id, "status": "reused" if result.reused else "created",
                "base": art.config.get("model", {}).get("artifact_id") or art.config.get("model", {}).get("location"),
                "dataset": result.info["dataset"], "mask": result.info["mask"] or "-"}
        if result.info["mask"]:
            rows["lambda"] = art.config.get("lambda")
        rows["profile"] = result.info["profile"]
        rows.update({label: s[key] for key, label in _ROWS if s.get(key) is not None})
        rows["model"] = str(art.path / "model")
        title = "checkpoint (fine-tuned)" if mode == "finetune" else "checkpoint (trained from scratch)"
        console.print(common.kv_table(title, rows))

    return render

