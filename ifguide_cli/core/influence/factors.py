"""Paper step 1: fit the curvature (EK-FAC factors) of the model's training loss on its training rows.

kronfluence fits the chosen approximation (ekfac | kfac | diagonal | identity) of the model's summed
next-token CE on the rows of a `datasets` artifact, with pseudo-labels drawn from the model (the true
Fisher, seeded per row). The artifact holds kronfluence's own files (``kronfluence/factors_<strategy>/``);
`compute_scores` reads them from there.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ifguide_cli.core import dist, notes
from ifguide_cli.core.data.rows import CorpusRows
from ifguide_cli.core.influence import kron_compat
from ifguide_cli.core.influence.config import ALL_ROWS, FactorsConfig, default_batch_size, influence_precision
from ifguide_cli.core.influence.engine import InfluenceEngine
from ifguide_cli.core.influence.families import ModuleFamily, resolve_family
from ifguide_cli.core.influence.inputs import load_model_for_influence, resolve_dataset
from ifguide_cli.core.influence.staging import KRON_DIR, RUN_FILE, check_split, influence_device, prepare_staging
from ifguide_cli.core.influence.task import FISHER_SEED
from ifguide_cli.core.progress import NULL, Reporter
from ifguide_cli.core.stage import ArtifactKey, Result, Stage, run_stage

if TYPE_CHECKING:
    from ifguide_cli.core.store.workspace import Artifact, BuildContext, Workspace


@dataclass(frozen=True)
class FactorsRefs:
    """What `ifguide factors` is given: MODEL, DATA, the settings that decide how they resolve (device, precision,
    modules, row length, rows fitted) and the `CorpusConfig` options of DATA (None: not given)."""

    model: str
    data: str
    config: FactorsConfig
    corpus: dict[str, Any] | None = None


@dataclass
class FactorsInputs:
    """Everything the fit needs, resolved and checked before any work starts (the model is loaded: its weights'
    fingerprint and tracked modules are part of the key)."""

    mref: Any  # models.ModelRef
    dinfo: dist.DistInfo
    precision: str
    family: ModuleFamily
    dataset: Artifact
    shape: tuple[int, int]  # the dataset's rows × seq_len
    fit_examples: int
    model: Any
    modules: list[str]
    fingerprint: str


@dataclass(frozen=True, kw_only=True)
class FactorsKey(ArtifactKey):
    """What identifies fitted factors: the model (and its weights), the tracked modules, the rows, the approximation."""

    kind: ClassVar[str] = "factors"
    model: dict[str, Any]
    model_fingerprint: str
    family: dict[str, Any]
    modules: list[str]
    dataset: str
    seq_len: int
    fit_examples: int
    strategy: str
    precision: str
    use_empirical_fisher: bool = False
    fisher_seed: int = FISHER_SEED
    tokenizer: str


class FactorsStage(Stage[FactorsRefs, FactorsInputs, FactorsConfig, dict[str, Any]]):
    """`ifguide factors`: fit the curvature of MODEL's training loss on the rows of DATA (a `factors` artifact)."""

    kind = "factors"

    def __init__(self, reporter: Reporter = NULL, debug: bool = False):
        self.reporter, self.debug = reporter, debug

    def inputs(self, ws: Workspace, refs: FactorsRefs) -> FactorsInputs:
        from ifguide_cli.core.data import corpus_shape
        from ifguide_cli.core.models import require_trained, resolve_model, trained_dataset

        config = refs.config
        kron_compat.check_version()
        mref = resolve_model(refs.model, ws)
        require_trained(mref, config.allow_random, "fitting factors")  # before any work
        dinfo = dist.setup(config.device)
        precision = influence_precision(config.precision, dinfo.device)
        family = resolve_family(mref, ws, families_file=config.families_file, module_globs=config.modules)
        dataset = resolve_dataset(ws, refs.data, mref, {**(refs.corpus or {}), "seq_len": config.seq_len}, dinfo,
                                  prefer=trained_dataset(ws, mref), reporter=self.reporter)
        shape = corpus_shape(dataset)
        fit_examples = shape[0] if config.max_examples is None else min(config.max_examples, shape[0])
        check_split(fit_examples, config.partitions, dinfo)
        model, modules, fingerprint = load_model_for_influence(mref, family)
        return FactorsInputs(mref, dinfo, precision, family, dataset, shape, fit_examples, model, modules, fingerprint)

    def key(self, inputs: FactorsInputs, config: FactorsConfig) -> FactorsKey:
        mref = inputs.mref
        return FactorsKey(parents=(inputs.dataset.id, *mref.parents), model=mref.identity(),
                          model_fingerprint=inputs.fingerprint, family=inputs.family.identity(), modules=inputs.modules,
                          dataset=inputs.dataset.id, seq_len=inputs.shape[1], fit_examples=inputs.fit_examples,
                          strategy=config.strategy, precision=inputs.precision, tokenizer=mref.tokenizer)

    def describe(self, inputs: FactorsInputs, config: FactorsConfig) -> str:
        return f"fit {config.strategy} factors on {inputs.fit_examples:,} rows of dataset {inputs.dataset.id}"

    def build(self, ctx: BuildContext, inputs: FactorsInputs, config: FactorsConfig) -> dict[str, Any]:
        engine = InfluenceEngine(inputs.model, inputs.modules, inputs.dinfo, inputs.precision, debug=self.debug)
        return _fit(ctx, inputs, config, engine, self.reporter)


def fit_factors(ws: Workspace, model_ref: str, data_ref: str, cfg: FactorsConfig, *, corpus: dict | None = None, reporter=NULL,
                force: bool = False, name: str | None = None, debug: bool = False) -> Result[dict[str, Any]]:
    """Fit influence factors of MODEL on DATA (a `factors` artifact). Reuses an identical finished one.

    `corpus`: the `CorpusConfig` options of DATA (layout, label field, …; `seq_len` is `cfg.seq_len`); a
    checkpoint given its own source data reuses the dataset it was trained on.
    """
    stage = FactorsStage(reporter, debug)
    inputs = stage.inputs(ws, FactorsRefs(model_ref, data_ref, cfg, corpus))
    if inputs.dinfo.main:
        _note_partial_fit(inputs.fit_examples, inputs.shape[0])
        if not inputs.mref.pretrained:  # --allow-random
            notes.warn(f"note: {model_ref!r} has no trained weights: these are the factors of its seeded random "
                       "initialisation (--allow-random)")
    return run_stage(ws, stage, inputs, cfg, name=name, force=force, device=influence_device(cfg.device))


def _note_partial_fit(fit_examples: int, n_rows: int) -> None:
    """Say so when the curvature is fit on the first rows only (the default caps it at 100,000 rows)."""
    if fit_examples < n_rows:
        notes.warn(f"factors are fit on the first {fit_examples:,} of {n_rows:,} rows; `--max-examples {ALL_ROWS}` fits on "
                   "every row, as the paper does")


def _fit(ctx: BuildContext, inputs: FactorsInputs, cfg: FactorsConfig, engine: InfluenceEngine, reporter) -> dict:
    """The build step: resume check, kronfluence's passes, the summary of the factors artifact."""
    from ifguide_cli.core.data import mapped_corpus

    dinfo, corpus = inputs.dinfo, mapped_corpus(inputs.dataset)  # read a batch at a time: memory does not grow with the corpus
    batch_size = cfg.batch_size or default_batch_size(inputs.shape[1])
    note = prepare_staging(ctx.staging, {"partitions": cfg.partitions, "strategy": cfg.strategy}, dinfo,
                           ctx.staging / KRON_DIR)
    if note:
        notes.warn(note)
    train = CorpusRows(corpus.input_ids, corpus.attention_mask, with_index=True)
    start = time.perf_counter()
    with ctx.timed("fit"):
        phase_times = engine.fit(ctx.staging, train, cfg.strategy, inputs.fit_examples, batch_size, cfg.partitions,
                                 reporter=reporter if dinfo.main else NULL)
    ctx.timings.update({f"fit_{k}": v for k, v in phase_times.items()})
    dist.barrier()
    elapsed = time.perf_counter() - start
    if dinfo.main:
        (ctx.staging / RUN_FILE).unlink(missing_ok=True)
    return {"strategy": cfg.strategy, "precision": inputs.precision, "modules": len(inputs.modules),
            "family": inputs.family.name, "fit_examples": inputs.fit_examples,
            "fit_tokens": int(corpus.attention_mask[:inputs.fit_examples].sum()), "seq_len": corpus.shape[1],
            "dataset": inputs.dataset.id, "batch_size": batch_size, "partitions": cfg.partitions,
            "processes": dinfo.world, "seconds": round(elapsed, 3), "files": f"{KRON_DIR}/factors_{cfg.strategy}/"}
