"""`ifguide scores`: token-wise differential influence of the training data (paper step 2)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ifguide_cli.cli import common
from ifguide_cli.cli.commands import summary
from ifguide_cli.cli.options import FILLED, ForceOpt, NameOpt, config_options
from ifguide_cli.core.data.layout import CorpusConfig
from ifguide_cli.core.influence.config import ScoresConfig

_EPILOG = (
    "One kronfluence pass: toxic and safe queries form one query set weighted +1/N_tox and −1/N_safe, so the result equals "
    "(toxic influence) − (safe influence). Output: scores.safetensors, key `scores`, (docs × seq_len) in --storage (default float32), aligned with "
    "the dataset's input_ids: scores\\[i, t] is the influence of the loss term predicting token t (the training mask's "
    "alignment); column 0 and padding are 0. High = makes toxic continuations more likely. Query sets: registry names "
    "(tiny-queries-toxic, tiny-queries-safe), RTP-style .jsonl with prompt/continuation (nested {text: …} accepted), or hub "
    "ids. Rows are scored in blocks, each written into the artifact when done: memory does not grow with the corpus, and a "
    "killed run resumes from the last finished block. Multi-GPU: `torchrun --nproc-per-node N -m ifguide_cli scores ...`. "
    "Part of the data: --max-rows N or --rows FILE; the other rows score 0, the file's `rows` tensor lists the scored "
    "ones, and `mask` never selects the others. Independent jobs (a Slurm array): --shard I/N scores the I-th of N "
    "contiguous blocks of rows as a partial artifact; the job that stores the last one merges all N into the artifact "
    "an unsharded run makes (same id).\n\n"
    "Examples:\n\n"
    "ifguide scores tiny-factors -t tiny-queries-toxic -s tiny-queries-safe --name tiny-scores\n"
    "ifguide scores latest:factors -t toxic.jsonl -s safe.jsonl --damping 1e-3"
)

# `auto` or a number: a string for Typer, parsed and range-checked by ScoresConfig
DampingOpt = Annotated[str, typer.Option(
    "--damping", help="auto (kronfluence's heuristic, 0.1 × mean eigenvalue per module) or a number > 0.")]


def register(app: typer.Typer) -> None:
    @app.command("scores", help=summary("scores"),
                 epilog=_EPILOG)
    @config_options(CorpusConfig, into="corpus", overrides_only=True)
    @config_options(ScoresConfig, exclude=("damping",))
    def scores(
        factors: str = typer.Argument(..., help="Factors artifact (id, prefix, name, or `latest`).", autocompletion=common.complete_artifacts("factors")),
        toxic_queries: str = typer.Option(..., "--toxic-queries", "-t", help="Toxic prompt+continuation queries.", autocompletion=common.complete_artifacts("datasets", registry="datasets")),
        safe_queries: Optional[str] = typer.Option(None, "--safe-queries", "-s", help="Non-toxic queries (subtracted); omit for toxic influence only.",
                                                   autocompletion=common.complete_artifacts("datasets", registry="datasets")),
        data: Optional[str] = typer.Option(None, "--data", "-d", help="Training rows to score (default: the factors' dataset); "
                                                                     "same tokenizer and row length as the factors' fit set.",
                                           autocompletion=common.complete_artifacts("datasets", registry="datasets")),
        model: Optional[str] = typer.Option(None, "--model", help="Check that the factors belong to this model (default: the factors' model).",
                                            autocompletion=common.complete_artifacts("checkpoints", registry="models")),
        damping: DampingOpt = "auto",
        name: NameOpt = None,
        force: ForceOpt = False,
        config: ScoresConfig = FILLED,
        corpus: Optional[dict] = None,
    ) -> None:
        from ifguide_cli.core.dist import is_main_process
        from ifguide_cli.core.influence import compute_scores, influence_device
        from ifguide_cli.core.store.artifact_files import MODULE_SCORES_FILE, SCORES_FILE

        config = config.replace(damping=damping)
        result = compute_scores(common.workspace(), factors, toxic_queries, safe_queries, config, data_ref=data, corpus=corpus,
                                model_ref=model, reporter=common.reporter(), force=force, name=name,
                                debug=common.settings.debug)
        if not is_main_process():
            return
        art = result.artifact
        files = {"scores": str(art.path / SCORES_FILE)}
        if config.per_module:
            files["module_scores"] = str(art.path / MODULE_SCORES_FILE)
        extra = {"factors": art.config["factors"], "dataset": art.config["dataset"], "file": files["scores"]}
        if art.summary.get("scored_rows") is not None:
            extra["scored rows"] = f"{art.summary['scored_rows']:,} of {art.summary['documents']:,}"
        merged = {}
        if config.shard is not None:  # the job that stores the last shard merges them all into the full artifact
            from ifguide_cli.core.influence.merge import merge_if_complete

            done = merge_if_complete(common.workspace(), art)
            merged["merged"] = None if done is None else done.artifact.id
            extra["merged into"] = merged["merged"] or "(waiting for the other shards)"
        common.emit(common.artifact_payload(art, result.reused, files=files, config=art.config,
                                            device=influence_device(config.device), **merged),
                    common.render_artifact("scores (differential influence)", art, result.reused, extra))
