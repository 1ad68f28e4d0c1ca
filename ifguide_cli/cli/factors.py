"""`ifguide factors`: fit EK-FAC (or KFAC / diagonal / identity) influence factors (paper step 1)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ifguide_cli.cli import common
from ifguide_cli.cli.commands import summary
from ifguide_cli.cli.options import FILLED, ForceOpt, NameOpt, config_options
from ifguide_cli.core.data.layout import CorpusConfig
from ifguide_cli.core.influence.config import ALL_ROWS, DEFAULT_MAX_EXAMPLES, FactorsConfig

_EPILOG = (
    "The factors artifact holds kronfluence's files (kronfluence/factors_<strategy>/); `ifguide scores` reads them. "
    "Tracked modules come from the model family (gpt_neox, llama, gpt2 built in). Add a family without editing code in a "
    "YAML file given with --families or $IFGUIDE_FAMILIES (or WORKSPACE/families.yaml): "
    "`families: {phi: {model_types: \\[phi], modules: \\['model.layers.*.mlp.fc1', 'model.layers.*.mlp.fc2']}}`, "
    "or pass --modules GLOB. A killed run resumes from its finished partitions (--partitions) when run again. "
    "DATA given as a source file is tokenized like the checkpoint's training data (its dataset is reused; the layout "
    "options are needed only for other data). A registry model without trained weights is refused (--allow-random). "
    "Multi-GPU / multi-process: `torchrun --nproc-per-node N -m ifguide_cli factors ...`.\n\n"
    "Examples:\n\n"
    "ifguide factors tiny --data tiny --name tiny-factors\n"
    "ifguide factors my-baseline --data owt-sample --strategy kfac\n"
    "torchrun --nproc-per-node 4 -m ifguide_cli factors pythia-160m --data openwebtext"
)

# a whole number or `all`: a string for Typer, parsed and range-checked by FactorsConfig
MaxExamplesOpt = Annotated[Optional[str], typer.Option(
    "--max-examples", metavar="N|all", help=f"Fit on at most this many rows (the first ones); `{ALL_ROWS}` = every row (the paper's). "
                           f"\\[default: {DEFAULT_MAX_EXAMPLES}]", show_default=False)]
ModulesOpt = Annotated[Optional[list[str]], typer.Option(
    "--modules", help="Glob of module names to track (repeatable); overrides the family.")]


def register(app: typer.Typer) -> None:
    @app.command("factors", help=summary("factors"),
                 epilog=_EPILOG)
    @config_options(CorpusConfig, into="corpus", overrides_only=True, exclude=("seq_len", "max_examples"))
    @config_options(FactorsConfig, exclude=("modules", "max_examples"))
    def factors(
        model: str = typer.Argument(..., help="Model: registry name, checkpoint artifact, local save_pretrained folder, or hub id.",
                                    autocompletion=common.complete_artifacts("checkpoints", registry="models")),
        data: str = typer.Option(..., "--data", "-d", help="Training data: registry dataset, local file, hub id, or dataset artifact.",
                                 autocompletion=common.complete_artifacts("datasets", registry="datasets")),
        modules: ModulesOpt = None,
        max_examples: MaxExamplesOpt = None,
        name: NameOpt = None,
        force: ForceOpt = False,
        config: FactorsConfig = FILLED,
        corpus: Optional[dict] = None,
    ) -> None:
        from ifguide_cli.core.dist import is_main_process
        from ifguide_cli.core.influence import describe_model, fit_factors, influence_device

        if modules:
            config = config.replace(modules=tuple(modules))
        if max_examples is not None:
            config = config.replace(max_examples=max_examples)
        result = fit_factors(common.workspace(), model, data, config, corpus=corpus, reporter=common.reporter(),
                             force=force, name=name, debug=common.settings.debug)
        if not is_main_process():  # other ranks of a distributed run: rank 0 reports
            return
        art, device = result.artifact, influence_device(config.device)
        extra = {"model": describe_model(art.config["model"]), "dataset": art.config["dataset"], "device": device}
        common.emit(common.artifact_payload(art, result.reused, config=art.config, device=device),
                    common.render_artifact("factors", art, result.reused, extra))
