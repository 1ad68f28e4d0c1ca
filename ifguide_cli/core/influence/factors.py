"""Paper step 1: fit the curvature (EK-FAC factors) of the model's training loss on its training rows.

kronfluence fits the chosen approximation (ekfac | kfac | diagonal | identity) of the model's summed
next-token CE on the rows of a `datasets` artifact, with pseudo-labels drawn from the model (the true
Fisher, seeded per row). The artifact holds kronfluence's own files (``kronfluence/factors_<strategy>/``);
`compute_scores` reads them from there.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ifguide_cli.core import dist, notes
from ifguide_cli.core.data.rows import CorpusRows
from ifguide_cli.core.influence import kron_compat
from ifguide_cli.core.influence.config import ALL_ROWS, FactorsConfig, default_batch_size, influence_precision
from ifguide_cli.core.influence.engine import InfluenceEngine
from ifguide_cli.core.influence.families import ModuleFamily, resolve_family
from ifguide_cli.core.influence.inputs import load_model_for_influence, resolve_dataset
from ifguide_cli.core.influence.staging import KRON_DIR, RUN_FILE, StageResult, check_split, prepare_staging
from ifguide_cli.core.influence.task import FISHER_SEED
from ifguide_cli.core.progress import NULL


@dataclass
class _FitJob:
    """Everything the fit needs, resolved before any work starts."""

    cfg: FactorsConfig
    dinfo: dist.DistInfo
    precision: str
    family: ModuleFamily
    modules: list[str]
    dataset: Any  # the datasets artifact
    corpus: Any
    fit_examples: int
    batch_size: int


def fit_factors(ws, model_ref: str, data_ref: str, cfg: FactorsConfig, *, corpus: dict | None = None, reporter=NULL,
                force: bool = False, name: str | None = None, debug: bool = False) -> StageResult:
    """Fit influence factors of MODEL on DATA (a `factors` artifact). Reuses an identical finished one.

    `corpus`: the `CorpusConfig` options of DATA (layout, label field, …; `seq_len` is `cfg.seq_len`); a
    checkpoint given its own source data reuses the dataset it was trained on.
    """
    from ifguide_cli.core.data import load_corpus
    from ifguide_cli.core.models import require_trained, resolve_model, trained_dataset

    kron_compat.check_version()
    mref = resolve_model(model_ref, ws)
    require_trained(mref, cfg.allow_random, "fitting factors")  # before any work
    dinfo = dist.setup(cfg.device)
    precision = influence_precision(cfg.precision, dinfo.device)
    family = resolve_family(mref, ws, families_file=cfg.families_file, module_globs=cfg.modules)
    dataset = resolve_dataset(ws, data_ref, mref, {**(corpus or {}), "seq_len": cfg.seq_len}, dinfo,
                              prefer=trained_dataset(ws, mref), reporter=reporter)
    corpus = load_corpus(dataset)
    n_rows, seq_len = corpus.shape
    fit_examples = n_rows if cfg.max_examples is None else min(cfg.max_examples, n_rows)
    if dinfo.main:
        _note_partial_fit(fit_examples, n_rows)
    check_split(fit_examples, cfg.partitions, dinfo)
    model, modules, fingerprint = load_model_for_influence(mref, family)
    job = _FitJob(cfg, dinfo, precision, family, modules, dataset, corpus, fit_examples,
                  cfg.batch_size or default_batch_size(seq_len))
    config = {
        "model": mref.identity(), "model_fingerprint": fingerprint, "family": family.identity(), "modules": modules,
        "dataset": dataset.id, "seq_len": seq_len, "fit_examples": fit_examples, "strategy": cfg.strategy,
        "precision": precision, "use_empirical_fisher": False, "fisher_seed": FISHER_SEED, "tokenizer": mref.tokenizer,
    }
    engine = InfluenceEngine(model, modules, dinfo, precision, debug=debug)
    if dinfo.main and not mref.pretrained:  # --allow-random
        notes.warn(f"note: {model_ref!r} has no trained weights: these are the factors of its seeded random "
                   "initialisation (--allow-random)")
    device = dist.device_label(dinfo.device, dinfo.world)
    art, reused = ws.create("factors", config, [dataset.id, *mref.parents],
                            lambda ctx: _fit(ctx, job, engine, reporter), name=name, force=force, device=device)
    return StageResult(art, reused, {"dataset": dataset.id, "batch_size": job.batch_size, "partitions": cfg.partitions,
                                     "device": device})


def _note_partial_fit(fit_examples: int, n_rows: int) -> None:
    """Say so when the curvature is fit on the first rows only (the default caps it at 100,000 rows)."""
    if fit_examples < n_rows:
        notes.warn(f"factors are fit on the first {fit_examples:,} of {n_rows:,} rows; `--max-examples {ALL_ROWS}` fits on "
                   "every row, as the paper does")


def _fit(ctx, job: _FitJob, engine: InfluenceEngine, reporter) -> dict:
    """The build step: resume check, kronfluence's passes, the summary of the factors artifact."""
    cfg, dinfo = job.cfg, job.dinfo
    note = prepare_staging(ctx.staging, {"partitions": cfg.partitions, "strategy": cfg.strategy}, dinfo,
                           ctx.staging / KRON_DIR)
    if note:
        notes.warn(note)
    train = CorpusRows(job.corpus.input_ids, job.corpus.attention_mask, with_index=True)
    start = time.perf_counter()
    with ctx.timed("fit"):
        phase_times = engine.fit(ctx.staging, train, cfg.strategy, job.fit_examples, job.batch_size, cfg.partitions,
                                 reporter=reporter if dinfo.main else NULL)
    ctx.timings.update({f"fit_{k}": v for k, v in phase_times.items()})
    dist.barrier()
    elapsed = time.perf_counter() - start
    if dinfo.main:
        (ctx.staging / RUN_FILE).unlink(missing_ok=True)
    return {"strategy": cfg.strategy, "precision": job.precision, "modules": len(job.modules), "family": job.family.name,
            "fit_examples": job.fit_examples, "fit_tokens": int(job.corpus.attention_mask[:job.fit_examples].sum()),
            "seq_len": job.corpus.shape[1], "dataset": job.dataset.id, "batch_size": job.batch_size,
            "partitions": cfg.partitions, "processes": dinfo.world, "seconds": round(elapsed, 3),
            "files": f"{KRON_DIR}/factors_{cfg.strategy}/"}
