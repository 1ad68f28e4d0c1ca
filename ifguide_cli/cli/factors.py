"""`ifguide factors`: fit EK-FAC (or KFAC / diagonal / identity) influence factors (paper step 1)."""

from __future__ import annotations

from typing import List, Optional

import typer

from . import common

_EPILOG = (
    "The factors artifact holds kronfluence's files (kronfluence/factors_<strategy>/); `ifguide scores` reads them. "
    "Tracked modules come from the model family (gpt_neox, llama, gpt2 built in). Add a family without editing code in a "
    "YAML file given with --families or $IFGUIDE_FAMILIES (or WORKSPACE/families.yaml): "
    "`families: {phi: {model_types: [phi], modules: ['model.layers.*.mlp.fc1', 'model.layers.*.mlp.fc2']}}`, "
    "or pass --modules GLOB. A killed run resumes from its finished partitions (--partitions) when run again. "
    "Multi-GPU / multi-process: `torchrun --nproc-per-node N -m ifguide_cli factors ...`."
)


def register(app: typer.Typer) -> None:
    @app.command("factors", help="Fit EK-FAC (or KFAC/diagonal/identity) influence factors of a model on its training data.",
                 epilog=_EPILOG)
    @common.handles_errors
    def factors(
        model: str = typer.Argument(..., help="Model: registry name, checkpoint artifact, local save_pretrained folder, or hub id."),
        data: str = typer.Option(..., "--data", "-d", help="Training data: registry dataset, local file, hub id, or dataset artifact."),
        strategy: str = typer.Option("ekfac", "--strategy", help="Curvature approximation: ekfac | kfac | diagonal | identity."),
        precision: str = typer.Option("fp32", "--precision", help="fp32 | bf16 (bf16 forward/backward, fp32 accumulation)."),
        batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Rows per device and batch (default: 16384 tokens' worth)."),
        max_examples: Optional[int] = typer.Option(100_000, "--max-examples", help="Fit on at most this many rows (the first ones)."),
        partitions: int = typer.Option(1, "--partitions", help="Data partitions: finished ones survive a crash and are not recomputed."),
        seq_len: Optional[int] = typer.Option(None, "--seq-len", help="Tokens per row when tokenizing DATA (default: 64 tiny, 2048 else)."),
        modules: Optional[List[str]] = typer.Option(None, "--modules", help="Glob of module names to track (repeatable); overrides the family."),
        families: Optional[str] = typer.Option(None, "--families", help="YAML/JSON file of extra model families (see below)."),
        device: str = typer.Option("auto", "--device", help="auto | cpu | cuda."),
        name: Optional[str] = typer.Option(None, "--name", help="A name for the factors artifact."),
        force: bool = typer.Option(False, "--force", help="Refit even if identical factors exist."),
    ) -> None:
        from ..core.influence import FactorsConfig, fit_factors
        from ..core.workspace import is_main_process

        cfg = FactorsConfig(strategy=strategy, precision=precision, max_examples=max_examples,
                            modules=tuple(modules) if modules else None, families_file=families, seq_len=seq_len,
                            batch_size=batch_size, partitions=partitions, device=device)
        result = fit_factors(common.workspace(), model, data, cfg, reporter=common.reporter(),
                             force=force, name=name, debug=common.settings.debug)
        if not is_main_process():  # other ranks of a distributed run: rank 0 reports
            return
        art = result.artifact
        for key in ("resume", "note"):
            if result.info.get(key):
                common.info(result.info[key])
        extra = {"model": _model_label(art.config["model"]), "dataset": art.config["dataset"], "device": result.info["device"]}
        common.emit(common.artifact_payload(art, result.reused, config=art.config, device=result.info["device"]),
                    common.render_artifact("factors", art, result.reused, extra))


def _model_label(identity: dict) -> str:
    if identity.get("source") == "checkpoint":
        return f"checkpoint {identity.get('artifact_id')}"
    return str(identity.get("location"))
