"""`ifguide scores`: token-wise differential influence of the training data (paper step 2)."""

from __future__ import annotations

from typing import Optional

import typer

from . import common

_EPILOG = (
    "One kronfluence pass: toxic and safe queries form one query set weighted +1/N_tox and −1/N_safe, so the result equals "
    "(toxic influence) − (safe influence). Output: scores.safetensors, key `scores`, float32 (docs × seq_len) aligned with "
    "the dataset's input_ids: scores[i, t] is the influence of the loss term predicting token t (the training mask's "
    "alignment); column 0 and padding are 0. High = makes toxic continuations more likely. Query sets: registry names "
    "(tiny-queries-toxic, tiny-queries-safe), RTP-style .jsonl with prompt/continuation (nested {text: …} accepted), or hub "
    "ids. A killed run resumes from its finished partitions. Multi-GPU: `torchrun --nproc-per-node N -m ifguide_cli scores ...`."
)


def register(app: typer.Typer) -> None:
    @app.command("scores", help="Token-wise differential influence of the training data (toxic minus safe queries).",
                 epilog=_EPILOG)
    @common.handles_errors
    def scores(
        factors: str = typer.Argument(..., help="Factors artifact (id, prefix, name, or `latest`)."),
        toxic_queries: str = typer.Option(..., "--toxic-queries", "-t", help="Toxic prompt+continuation queries."),
        safe_queries: Optional[str] = typer.Option(None, "--safe-queries", "-s", help="Non-toxic queries (subtracted); omit for toxic influence only."),
        data: Optional[str] = typer.Option(None, "--data", "-d", help="Training rows to score (default: the factors' dataset); "
                                                                     "same tokenizer and row length as the factors' fit set."),
        model: Optional[str] = typer.Option(None, "--model", help="Check that the factors belong to this model (default: the factors' model)."),
        damping: str = typer.Option("auto", "--damping", help="auto (kronfluence's heuristic, 0.1 × mean eigenvalue per module) or a number > 0."),
        precision: str = typer.Option("fp32", "--precision", help="fp32 | bf16 (bf16 forward/backward and per-token products, fp32 preconditioning)."),
        batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Training rows per device and batch (default: 16384 tokens' worth)."),
        query_batch_size: int = typer.Option(16, "--query-batch-size", help="Queries per device and batch."),
        partitions: int = typer.Option(1, "--partitions", help="Data partitions: finished ones survive a crash and are not recomputed."),
        per_module: bool = typer.Option(False, "--per-module", help="Also save per-module scores (module_scores.safetensors)."),
        max_queries: Optional[int] = typer.Option(None, "--max-queries", help="Use a seeded random subset of at most this many queries per set."),
        query_seed: int = typer.Option(0, "--query-seed", help="Seed of the query subsampling."),
        query_low_rank: Optional[int] = typer.Option(None, "--query-low-rank", help="Low-rank query gradient (only without --safe-queries)."),
        device: str = typer.Option("auto", "--device", help="auto | cpu | cuda."),
        name: Optional[str] = typer.Option(None, "--name", help="A name for the scores artifact."),
        force: bool = typer.Option(False, "--force", help="Recompute even if identical scores exist."),
    ) -> None:
        from ..core.influence import ScoresConfig, compute_scores
        from ..core.workspace import is_main_process

        cfg = ScoresConfig(damping=_parse_damping(damping), precision=precision, per_module=per_module, max_queries=max_queries,
                           query_seed=query_seed, query_low_rank=query_low_rank, batch_size=batch_size,
                           query_batch_size=query_batch_size, partitions=partitions, device=device)
        result = compute_scores(common.workspace(), factors, toxic_queries, safe_queries, cfg, data_ref=data, model_ref=model,
                                reporter=common.reporter(), force=force, name=name,
                                debug=common.settings.debug)
        if not is_main_process():
            return
        art = result.artifact
        for key in ("resume", "note"):
            if result.info.get(key):
                common.info(result.info[key])
        files = {"scores": str(art.path / "scores.safetensors")}
        if per_module:
            files["module_scores"] = str(art.path / "module_scores.safetensors")
        extra = {"factors": art.config["factors"], "dataset": art.config["dataset"], "file": files["scores"]}
        common.emit(common.artifact_payload(art, result.reused, files=files, config=art.config, device=result.info["device"]),
                    common.render_artifact("scores (differential influence)", art, result.reused, extra))


def _parse_damping(value: str) -> float | None:
    if value.strip().lower() in ("auto", "none", "heuristic"):
        return None
    try:
        return float(value)
    except ValueError:
        common.fail(f"--damping must be `auto` or a number > 0, got {value!r}", exit_code=2)
