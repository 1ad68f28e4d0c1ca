"""Paper step 2: score every training token by differential influence (toxic minus safe queries).

ONE kronfluence pass over the training rows with the toxic and the safe queries concatenated into one
query set, each query weighted +1/N_tox or −1/N_safe inside the measurement,
``aggregate_query_gradients=True`` and ``compute_per_token_scores=True``. Because the measurement is
linear in the weights this equals (toxic run) − (safe run) up to rounding, at half the cost
(`two_run_reference` is that check).

Alignment of the saved scores (the contract with `mask` and `train`): ``scores[i, t]`` is the influence
of the loss term that PREDICTS token t of row i — the same alignment as ``labels[i, t]`` before the
shift and as the training mask. kronfluence reports per-token scores per *input position* p, whose
output predicts token p+1, so we store ``scores[:, 1:] = kronfluence[:, :-1]`` and ``scores[:, 0] = 0``.
Consequently column 0 and every padded position score exactly 0. A high score marks a training token
whose loss term makes toxic continuations more likely relative to safe ones: S_it = −(mean_tox ∇log p(c|p) − mean_safe ∇log p(c|p))ᵀ H⁻¹ ∇L_it, the paper's token-wise
differential influence (step 2 of IF-Guide; the reference's src/compute_scores.py:219-229 computes it as two runs).
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ifguide_cli.core import dist, notes
from ifguide_cli.core.data.rows import CorpusRows
from ifguide_cli.core.errors import ArtifactNotFound, IfguideError
from ifguide_cli.core.influence import kron_compat
from ifguide_cli.core.influence.blocks import (
    BLOCKS_FILE,
    BlockPlan,
    create_file,
    finished_blocks,
    mark_finished,
    plan_blocks,
    write_block,
)
from ifguide_cli.core.influence.config import ScoresConfig, default_batch_size, influence_precision
from ifguide_cli.core.influence.damping import check_bf16_damping, heuristic_damping
from ifguide_cli.core.influence.engine import InfluenceEngine, align_to_labels
from ifguide_cli.core.influence.families import resolve_family
from ifguide_cli.core.influence.inputs import (
    describe_model,
    factors_dir_of,
    load_model_for_influence,
    model_from_identity,
    resolve_dataset,
)
from ifguide_cli.core.influence.queries import QuerySet, build_query_rows, load_query_set, query_rows
from ifguide_cli.core.influence.staging import KRON_DIR, influence_device
from ifguide_cli.core.influence.subset import ROWS_KEY, RowSubset, scored_rows
from ifguide_cli.core.progress import NULL, Reporter
from ifguide_cli.core.stage import ArtifactKey, Result, Stage, run_stage
from ifguide_cli.core.store.artifact_files import MODULE_SCORES_FILE, SCORES_FILE

if TYPE_CHECKING:
    from ifguide_cli.core.store.workspace import Artifact, BuildContext, Workspace

ALIGNMENT = "scores[i, t] = influence of the loss predicting token t (labels before the shift); column 0 and padding are 0"
BF16_FACTORS_NOTE = ("note: these factors were fit in bf16, which costs accuracy (scores ≈0.98 Spearman with fp32 on the "
                     "tiny test); fit the factors in fp32 and score in bf16 for the closest agreement")


@dataclass(frozen=True)
class ScoresRefs:
    """What `ifguide scores` is given: the factors, the query sets (no safe set: toxic influence only), the rows to
    score (default: the factors' dataset) with their `CorpusConfig` options, the model to check the factors
    against, and the settings that decide how they resolve (device, precision, queries kept, rows scored)."""

    factors: str
    toxic: str
    safe: str | None
    config: ScoresConfig
    data: str | None = None
    corpus: dict[str, Any] | None = None
    model: str | None = None


@dataclass
class ScoresInputs:
    """Everything the scoring pass needs, resolved and checked before any work starts."""

    factors: Artifact
    factors_dir: Path
    dinfo: dist.DistInfo
    precision: str
    mref: Any  # models.ModelRef: the model the factors were fit on
    dataset: Artifact
    shape: tuple[int, int]  # the dataset's rows × seq_len
    toxic: QuerySet
    safe: QuerySet | None
    queries: Any  # QueryRows
    model: Any
    modules: list[str]
    fingerprint: str
    plan: BlockPlan  # the scored rows and the blocks they are scored in
    subset: RowSubset | None = None  # the rows scored (None: all)

    @property
    def strategy(self) -> str:
        return self.factors.config["strategy"]


@dataclass(frozen=True, kw_only=True)
class ScoresKey(ArtifactKey):
    """What identifies scores: everything that decides them (not how the work was split)."""

    kind: ClassVar[str] = "scores"
    rows: dict[str, Any] | None = None  # recorded only when part of the data is scored
    factors: str
    dataset: str
    model: dict[str, Any]
    model_fingerprint: str
    strategy: str
    toxic_queries: dict[str, Any]
    safe_queries: dict[str, Any] | None
    weights: str
    max_queries: int | None
    query_seed: int
    query_low_rank: int | None
    damping: float | str
    precision: str
    factors_precision: str | None
    per_module: bool
    measurement: str = "summed CE over continuation tokens"
    alignment: str = ALIGNMENT
    storage: str | None = None  # `--storage` when not fp32 (fp32 artifacts keep the ids they had)

    def config(self) -> dict[str, Any]:
        out = super().config()
        for optional in ("rows", "storage"):
            if out[optional] is None:
                del out[optional]
        return out


def damping_label(cfg: ScoresConfig) -> float | str:
    return "auto" if cfg.damping is None else cfg.damping


class ScoresStage(Stage[ScoresRefs, ScoresInputs, ScoresConfig, dict[str, Any]]):
    """`ifguide scores`: token-wise differential influence of the training rows (a `scores` artifact)."""

    kind = "scores"

    def __init__(self, reporter: Reporter = NULL, debug: bool = False):
        self.reporter, self.debug = reporter, debug

    def inputs(self, ws: Workspace, refs: ScoresRefs) -> ScoresInputs:
        cfg = refs.config
        kron_compat.check_version()
        cfg.check_differential(refs.safe is not None)
        fart = ws.resolve(refs.factors, "factors")
        factors_dir = factors_dir_of(fart)
        dinfo = dist.setup(cfg.device)
        precision = influence_precision(cfg.precision, dinfo.device)
        mref = _scoring_model(ws, fart, refs.model)
        dataset, shape = _scoring_rows(ws, fart, mref, refs.data, refs.corpus or {}, dinfo, self.reporter)
        subset = scored_rows(cfg.max_rows, cfg.rows_file, shape[0], cfg.shard)
        toxic, safe, queries = _load_queries(mref, refs.toxic, refs.safe, shape[1], cfg, dinfo)
        plan = plan_blocks(shape[0], shape[1], None if subset is None else subset.indices, cfg.partitions, dinfo.world,
                           query_tokens=len(queries) * shape[1])
        check_bf16_damping(factors_dir, fart.config["strategy"], precision, cfg.damping)
        model, modules, fingerprint = _fitted_model(ws, fart, mref)
        return ScoresInputs(fart, factors_dir, dinfo, precision, mref, dataset, shape, toxic, safe, queries, model, modules,
                            fingerprint, plan, subset)

    def key(self, inputs: ScoresInputs, config: ScoresConfig) -> ScoresKey:
        fart, safe = inputs.factors, inputs.safe
        return ScoresKey(
            parents=(fart.id, inputs.dataset.id), rows=None if inputs.subset is None else inputs.subset.how,
            factors=fart.id, dataset=inputs.dataset.id, model=inputs.mref.identity(), model_fingerprint=inputs.fingerprint,
            strategy=inputs.strategy, toxic_queries=inputs.toxic.describe(), safe_queries=safe.describe() if safe else None,
            weights="toxic +1/N_tox, safe -1/N_safe" if safe else "toxic +1/N_tox", max_queries=config.max_queries,
            query_seed=config.query_seed, query_low_rank=config.query_low_rank, damping=damping_label(config),
            precision=inputs.precision, factors_precision=fart.config.get("precision"), per_module=config.per_module,
            storage=None if config.storage == "fp32" else config.storage)

    def describe(self, inputs: ScoresInputs, config: ScoresConfig) -> str:
        does = "toxic − safe queries" if inputs.safe is not None else "toxic queries only"
        return f"score every training token ({does})"

    def build(self, ctx: BuildContext, inputs: ScoresInputs, config: ScoresConfig) -> dict[str, Any]:
        engine = InfluenceEngine(inputs.model, inputs.modules, inputs.dinfo, inputs.precision, debug=self.debug)
        return _score(ctx, inputs, config, engine, self.reporter)


def compute_scores(ws: Workspace, factors_ref: str, toxic_ref: str, safe_ref: str | None, cfg: ScoresConfig, *,
                   data_ref: str | None = None, corpus: dict | None = None, model_ref: str | None = None, reporter=NULL,
                   force: bool = False, name: str | None = None, debug: bool = False) -> Result[dict[str, Any]]:
    """Token-wise differential influence of the training rows (a `scores` artifact).

    `corpus`: the `CorpusConfig` options of `data_ref` (a source is tokenized like the factors' dataset, which
    is reused when it is that source's). `cfg.max_rows` / `cfg.rows_file` / `cfg.shard` score part of the rows (see
    `subset`); `influence.merge.merge_if_complete` merges the shards once all are stored.
    """
    stage = ScoresStage(reporter, debug)
    inputs = stage.inputs(ws, ScoresRefs(factors_ref, toxic_ref, safe_ref, cfg, data_ref, corpus, model_ref))
    if inputs.dinfo.main and inputs.factors.config.get("precision") == "bf16":
        notes.warn(BF16_FACTORS_NOTE)
    return run_stage(ws, stage, inputs, cfg, name=name, force=force, device=influence_device(cfg.device))


# ---- resolving and checking the inputs -------------------------------------------------------
def _scoring_model(ws: Workspace, fart: Artifact, model_ref: str | None):
    """The model the factors were fit on; --model must name that same one."""
    from ifguide_cli.core.models import resolve_model

    try:
        mref = model_from_identity(fart.config["model"], ws)
    except IfguideError as exc:
        raise IfguideError(f"the model factors {fart.id} were fit on is not available ({exc.message})",
                           hint="pass it with --model", exit_code=2) from None
    if model_ref is None:
        return mref
    given = resolve_model(model_ref, ws)
    if given.identity() != fart.config["model"]:
        raise IfguideError(f"factors {fart.id} were fit on model {describe_model(fart.config['model'])}, not {model_ref!r}",
                           hint="fit factors for this model first (`ifguide factors MODEL --data ...`)", exit_code=2)
    return given


def _scoring_rows(ws: Workspace, fart: Artifact, mref, data_ref: str | None, corpus: dict, dinfo, reporter):
    """The rows to score (and their rows × seq_len): the factors' dataset, or another one with the same tokenizer and
    row length."""
    from ifguide_cli.core.data import corpus_shape, is_source_ref

    fconf = fart.config
    fit_set = ws.by_id(fconf["dataset"])
    if data_ref is None:
        if fit_set is None:
            raise ArtifactNotFound(f"dataset {fconf['dataset']} the factors were fit on is not in the workspace",
                                   hint="pass the training data with --data")
        dataset = fit_set
    else:
        # a source is tokenized like the factors' fit set (its row length unless --seq-len says otherwise)
        options = {"seq_len": fconf.get("seq_len"), **corpus} if is_source_ref(data_ref) else corpus
        dataset = resolve_dataset(ws, data_ref, mref, options, dinfo, prefer=fit_set, reporter=reporter)
        if dataset.config.get("tokenizer") != fconf.get("tokenizer", mref.tokenizer):
            raise IfguideError(f"dataset {dataset.id} was tokenized with {dataset.config.get('tokenizer')!r}, the factors' model "
                               f"uses {fconf.get('tokenizer')!r}", exit_code=2)
    shape = corpus_shape(dataset)
    if shape[1] != fconf.get("seq_len"):
        raise IfguideError(f"dataset {dataset.id} has rows of {shape[1]} tokens but factors {fart.id} were fit on rows "
                           f"of {fconf.get('seq_len')} tokens (dataset {fconf.get('dataset')})",
                           hint="score data tokenized like the factors' fit set (same --seq-len), or refit the factors on it",
                           exit_code=2)
    return dataset, shape


def _load_queries(mref, toxic_ref: str, safe_ref: str | None, seq_len: int, cfg: ScoresConfig, dinfo):
    """The toxic and safe query sets, and both as one weighted query set."""
    from ifguide_cli.core.models import load_tokenizer

    tokenizer = load_tokenizer(mref)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    toxic = load_query_set(toxic_ref, tokenizer, seq_len, cfg.max_queries, cfg.query_seed, "toxic")
    safe = load_query_set(safe_ref, tokenizer, seq_len, cfg.max_queries, cfg.query_seed, "safe") if safe_ref else None
    queries = query_rows(toxic, safe, pad_id)
    if len(queries) < dinfo.world:
        raise IfguideError(f"{len(queries)} queries cannot be split over {dinfo.world} processes", exit_code=2)
    return toxic, safe, queries


def _fitted_model(ws: Workspace, fart: Artifact, mref):
    """The model with the factors' tracked modules; its weights must be the ones the factors were fit on."""
    model, modules, fingerprint = load_model_for_influence(mref, resolve_family(mref, ws, family_spec=fart.config["family"]))
    if fingerprint != fart.config.get("model_fingerprint") or modules != fart.config.get("modules"):
        raise IfguideError(f"factors {fart.id} were fit on other weights than {describe_model(mref.identity())} "
                           "(the model changed since, or the factors come from another model)",
                           hint="refit the factors for this model (`ifguide factors ...`)", exit_code=2)
    return model, modules, fingerprint


# ---- the build: score block by block (resuming finished blocks), summarise ------------------
def _score(ctx: BuildContext, inputs: ScoresInputs, cfg: ScoresConfig, engine: InfluenceEngine, reporter) -> dict:
    """The build step: scores.safetensors in the staging folder, written block by block, and its summary."""
    from ifguide_cli.core.data import mapped_corpus
    from ifguide_cli.core.influence.summary import query_counts, score_summary
    from ifguide_cli.core.masking.scorefile import load_safetensors_array

    corpus, batch_size = mapped_corpus(inputs.dataset), cfg.batch_size or default_batch_size(inputs.shape[1])
    elapsed = _run(ctx, inputs, cfg, corpus, batch_size, engine, reporter)
    if not inputs.dinfo.main:
        return {}
    scores = load_safetensors_array(ctx.staging / SCORES_FILE, "scores", widen_bf16=False)
    summary = {**query_counts(inputs.toxic, inputs.safe),
               **score_summary(scores, corpus, elapsed, inputs.dinfo.world, rows=inputs.plan.rows)}
    summary.update({"damping": damping_label(cfg), "precision": inputs.precision, "strategy": inputs.strategy,
                    "batch_size": batch_size, "partitions": inputs.plan.count, "storage": cfg.storage})
    heuristic = heuristic_damping(inputs.factors_dir, inputs.strategy) if cfg.damping is None else None
    if heuristic:
        summary["damping_heuristic_min"] = min(heuristic.values())
        summary["damping_heuristic_max"] = max(heuristic.values())
    return summary


def _run(ctx: BuildContext, inputs: ScoresInputs, cfg: ScoresConfig, corpus, batch_size: int, engine: InfluenceEngine,
         reporter) -> float:
    """One kronfluence pass per unfinished block; rank 0 writes each block into the files. Returns seconds."""
    dinfo, plan = inputs.dinfo, inputs.plan
    run = {**plan.describe(), "storage": cfg.storage, "per_module": cfg.per_module}
    done = _resume_or_start(ctx.staging, run, inputs, cfg)
    per_rank = math.ceil(plan.scored / dinfo.world)
    start = time.perf_counter()
    with ctx.timed("scores"), (reporter if dinfo.main else NULL).task("scores: training rows", total=per_rank) as task:
        task.advance(sum(len(plan.block_rows(b)) for b in done) / dinfo.world)
        for block in range(plan.count):
            if block not in done:
                train = CorpusRows(corpus.input_ids, corpus.attention_mask, rows=plan.block_rows(block), with_index=True)
                _score_block(ctx.staging, inputs, cfg, train, batch_size, engine, task)
                done.add(block)
                if dinfo.main:
                    mark_finished(ctx.staging, run, done)
    if dinfo.main:
        shutil.rmtree(ctx.staging / KRON_DIR, ignore_errors=True)
        (ctx.staging / BLOCKS_FILE).unlink(missing_ok=True)
    dist.barrier()
    return time.perf_counter() - start


def _resume_or_start(staging: Path, run: dict, inputs: ScoresInputs, cfg: ScoresConfig) -> set[int]:
    """The blocks a killed run of the same settings finished (its files are kept); else fresh, zeroed files."""
    if inputs.dinfo.main:
        done = finished_blocks(staging, run)
        if done:
            notes.warn(f"resuming an interrupted run: {len(done)} of {inputs.plan.count} block(s) are done")
        else:
            (staging / MODULE_SCORES_FILE).unlink(missing_ok=True)  # created with the first block's module names
            create_file(staging / SCORES_FILE, inputs.plan, inputs.shape[1], cfg.storage, ["scores"], ROWS_KEY)
            mark_finished(staging, run, done)
    dist.barrier()
    return finished_blocks(staging, run)


def _score_block(staging: Path, inputs: ScoresInputs, cfg: ScoresConfig, train: CorpusRows, batch_size: int,
                 engine: InfluenceEngine, task) -> None:
    """kronfluence's pass over the block's rows; rank 0 writes their label-aligned scores (and per-module ones) in place."""
    raw = engine.scores(staging, inputs.factors_dir, train, inputs.queries, damping=cfg.damping, per_module=cfg.per_module,
                        batch_size=batch_size, query_batch_size=cfg.query_batch_size, partitions=1,
                        query_low_rank=cfg.query_low_rank, overwrite=True, task=task)
    if raw is None:  # not rank 0
        return
    assert train.rows is not None, "a block scores the rows it names"
    import torch

    aligned = {k: align_to_labels(v) for k, v in raw.items()}
    total = aligned["all_modules"] if "all_modules" in aligned else torch.stack(list(aligned.values())).sum(0)
    if cfg.per_module:
        module_file = staging / MODULE_SCORES_FILE
        if not module_file.exists():
            create_file(module_file, inputs.plan, total.shape[1], cfg.storage, sorted(aligned), None)
        write_block(module_file, aligned, train.rows, cfg.storage)
    write_block(staging / SCORES_FILE, {"scores": total}, train.rows, cfg.storage)


# ---- reference: the two-run difference (tests, benchmark) ------------------------------------
def two_run_reference(engine: InfluenceEngine, output_dir: Path, factors_dir: Path, train, toxic: QuerySet,
                      safe: QuerySet, pad_id: int, *, damping: float | None, batch_size: int, query_batch_size: int = 16):
    """(toxic run with weights 1/N_tox) − (safe run with weights 1/N_safe), label-aligned (N, T)."""
    runs = []
    for name, qs in (("toxic_only", toxic), ("safe_only", safe)):
        rows = build_query_rows([(qs.ids, qs.n_prompt, 1.0 / len(qs.ids))], pad_id)
        raw = engine.scores(output_dir, factors_dir, train, rows, damping=damping, per_module=False, batch_size=batch_size,
                            query_batch_size=query_batch_size, partitions=1, name=name)
        assert raw is not None, "the reference runs in one process"
        runs.append(align_to_labels(raw["all_modules"]))
    return runs[0] - runs[1]
