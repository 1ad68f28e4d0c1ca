"""`ifguide train` and `ifguide finetune`: LM training with the IF-Guide penalty objective.

The training options are generated from the configs in `core/training/config.py` (one declaration per
option); given options are passed on as overrides of the profile and the `--config` file.
"""

# no `from __future__ import annotations`: the option annotations use `mode`, a closure variable, and are
# evaluated when the command is defined
from typing import Annotated, Any, Optional

import typer

from ifguide_cli.cli import common
from ifguide_cli.cli.commands import summary
from ifguide_cli.cli.options import NameOpt, config_options
from ifguide_cli.core.data.layout import CorpusConfig
from ifguide_cli.core.training.config import RunOptions, SetupOptions, TrainConfig

_EPILOG = (
    "Defaults (\"by profile\"): the paper's reference settings (AdamW β=(0.9, 0.95), cosine, warm-up 1%, grad-clip 1.0, "
    "256 × 2048-token batches, lr 6e-4 pre-training / 6e-5 fine-tuning with wd 4e-4), or the small `tiny` profile "
    "for the packaged tiny model/data (lr 3e-3 / 1e-3, batch 32, 300 / 100 steps). "
    "Precedence: profile < --config FILE.yaml < options. "
    "A killed run resumes from its newest intermediate checkpoint when the same command is run again "
    "(--restart discards it). Multi-GPU: `torchrun --nproc-per-node N -m ifguide_cli {command} ...`. "
    "Your own corpus: the layout options (--layout, --seq-len, --label-field, --tokenizer …) are given once; the "
    "dataset artifact keeps them and later commands given the same --data reuse it. Trained from scratch, a model "
    "takes --tokenizer's vocabulary and the checkpoint keeps that tokenizer.\n\n"
    "Examples:\n\n{examples}"
)
_EXAMPLES = {
    "train": "ifguide train tiny --data tiny --name baseline\n"
             "ifguide train tiny --data tiny --mask tiny-mask --lambda 2 --name ifguide\n"
             "torchrun --nproc-per-node 8 -m ifguide_cli train pythia-160m --data openwebtext --mask owt-mask",
    "finetune": "ifguide finetune baseline --data tiny --mask tiny-mask --name ifguide-ft\n"
                "ifguide finetune baseline --data tiny --mask tiny-mask --suppression drop   # document filtering\n"
                "ifguide finetune pythia-2.8b --data openwebtext --mask owt-mask --max-steps 2000\n"
                "torchrun --nproc-per-node 8 -m ifguide_cli finetune pythia-2.8b --data openwebtext --mask owt-mask",
}
_MODEL_HELP = {
    "pretrain": "Architecture: registry name (`tiny`, `pythia-160m`…), a folder with config.json, a hub id, "
                "or a checkpoint (its config; weights re-initialised); or --model-config FILE instead.",
    "finetune": "Weights to start from: checkpoint artifact, local save_pretrained folder, hub id, "
                "or a registry model with pretrained weights.",
}
_HELP = {"pretrain": summary("train"), "finetune": summary("finetune")}


def _command(mode: str):
    """The `train` / `finetune` command: one option list, two modes."""
    model_default: Any = None if mode == "pretrain" else ...  # Typer: `...` makes MODEL required (finetune)

    @config_options(CorpusConfig, into="corpus", overrides_only=True, exclude=("seq_len",))
    @config_options(SetupOptions, into="setup", overrides_only=True, exclude=() if mode == "pretrain" else ("model_config",))
    @config_options(RunOptions, into="run", overrides_only=True)
    @config_options(TrainConfig, overrides_only=True)
    def command(
        data: Annotated[str, typer.Option("--data", "-d", help="Training data: registry dataset, local file, hub id, "
                                                                "or dataset artifact.",
                                          autocompletion=common.complete_artifacts("datasets", registry="datasets"))],
        config: dict,
        run: dict,
        setup: dict,
        corpus: dict,
        model: Annotated[Optional[str], typer.Argument(metavar="MODEL", help=_MODEL_HELP[mode],
                                                       autocompletion=common.complete_artifacts("checkpoints", registry="models"))] = model_default,
        mask: Annotated[Optional[str], typer.Option("--mask", "-m", help="Mask artifact (toxic tokens of this data) to penalise.",
                                                    autocompletion=common.complete_artifacts("masks"))] = None,
        config_file: Annotated[Optional[str], typer.Option("--config", help="YAML file of option: value (field names or "
                                                                            "option names).")] = None,
        resume: Annotated[bool, typer.Option("--resume/--restart", help="Continue an interrupted run of the same command "
                                                                        "from its newest checkpoint, or start over.")] = True,
        name: NameOpt = None,
        force: Annotated[bool, typer.Option("--force", help="Retrain even if an identical checkpoint exists.")] = False,
    ) -> None:
        _run(mode, model, data, mask, {**config, **run, **setup}, corpus, config_file, resume, name, force)

    return command


def register(app: typer.Typer) -> None:
    for name, mode in (("train", "pretrain"), ("finetune", "finetune")):
        app.command(name, help=_HELP[mode], epilog=_EPILOG.format(command=name, examples=_EXAMPLES[name]))(_command(mode))


def _run(mode: str, model: str | None, data: str, mask: str | None, values: dict, corpus: dict, config_file: str | None,
         resume: bool, name: str | None, force: bool) -> None:
    from ifguide_cli.core.dist import is_main_process
    from ifguide_cli.core.training import run_training

    result = run_training(common.workspace(), mode=mode, model_ref=model, data_ref=data, mask_ref=mask, values=values,
                          corpus=corpus, config_file=config_file, force=force, restart=not resume, name=name,
                          reporter=common.reporter())
    if not is_main_process():  # other ranks of a distributed run: rank 0 reports
        return
    art = result.artifact
    merged = _merged(art, bool(values.get("merge")), name, force)
    extra = {"merged": common.artifact_payload(merged.artifact, merged.reused)} if merged else {}
    common.emit(common.artifact_payload(art, result.reused, model_dir=str(art.path / "model"), config=art.config, **extra),
                _render(mode, art, result, merged))


def _merged(art, merge: bool, name: str | None, force: bool):
    """--merge: the LoRA checkpoint's merged child (None without --merge)."""
    if not merge:
        return None
    from ifguide_cli.core.training.merge import merge_adapter

    return merge_adapter(common.workspace(), art.id, name=f"{name}-merged" if name else None, force=force)


_ROWS = (  # summary fields shown in the table, in order (absent/None ones are skipped)
    ("steps", "steps"), ("resumed_from_step", "resumed from step"), ("tokens_seen", "tokens seen"),
    ("corpus_tokens", "corpus tokens"), ("epochs", "epochs"),
    ("final_loss", "final train loss"), ("eval_loss", "eval loss"), ("eval_perplexity", "eval perplexity"),
    ("dropped_rows", "rows left out (drop)"), ("dropped_documents", "documents left out (drop)"),
    ("masked_tokens", "masked tokens"), ("masked_token_nll", "masked-token NLL"), ("ordinary_token_nll", "ordinary-token NLL"),
    ("tokens_per_s", "tokens/s"), ("precision", "precision"), ("world_size", "processes"), ("train_seconds", "train seconds"),
)


def _render(mode: str, art, result, merged=None):
    def render(console):
        s = art.summary
        rows = {"id": art.id, "status": "reused" if result.reused else "created",
                "base": art.config.get("model", {}).get("artifact_id") or art.config.get("model", {}).get("location"),
                "dataset": art.config["dataset"], "mask": art.config["mask"] or "-",
                "validation": s.get("validation") or "none"}
        if art.config["mask"]:
            rows["suppression"] = art.config["train"].get("suppression", TrainConfig.suppression)
            if art.config.get("lambda") is not None:
                rows["lambda"] = art.config.get("lambda")
        rows["profile"] = art.config["profile"]
        rows.update({label: s[key] for key, label in _ROWS if s.get(key) is not None})
        rows["model"] = str(art.path / "model")
        if s.get("lora_rank"):
            rows["LoRA"] = f"rank {s['lora_rank']}, α {s['lora_alpha']:g}, {s['trainable_share']:.2%} of the weights trained"
            rows["adapter"] = str(art.path / "adapter")
        if merged is not None:
            rows["merged checkpoint"] = f"{merged.artifact.id} ({'reused' if merged.reused else 'created'})"
        title = "checkpoint (fine-tuned)" if mode == "finetune" else "checkpoint (trained from scratch)"
        console.print(common.kv_table(title, rows))

    return render
