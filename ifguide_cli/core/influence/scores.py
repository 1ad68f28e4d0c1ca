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

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ifguide_cli.core import dist, notes
from ifguide_cli.core.data.rows import CorpusRows
from ifguide_cli.core.errors import ArtifactNotFound, IfguideError
from ifguide_cli.core.influence import kron_compat
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
from ifguide_cli.core.influence.staging import (
    KRON_DIR,
    RUN_FILE,
    atomic_save,
    check_split,
    drop_half_written,
    influence_device,
    prepare_staging,
)
from ifguide_cli.core.influence.subset import ROWS_KEY, RowSubset, scored_rows
from ifguide_cli.core.influence.summary import score_summary
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

    def config(self) -> dict[str, Any]:
        out = super().config()
        if self.rows is None:
            del out["rows"]
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
        subset = scored_rows(cfg.max_rows, cfg.rows_file, shape[0])
        check_split(shape[0] if subset is None else len(subset), cfg.partitions, dinfo)
        toxic, safe, queries = _load_queries(mref, refs.toxic, refs.safe, shape[1], cfg, dinfo)
        check_bf16_damping(factors_dir, fart.config["strategy"], precision, cfg.damping)
        model, modules, fingerprint = _fitted_model(ws, fart, mref)
        return ScoresInputs(fart, factors_dir, dinfo, precision, mref, dataset, shape, toxic, safe, queries, model, modules,
                            fingerprint, subset)

    def key(self, inputs: ScoresInputs, config: ScoresConfig) -> ScoresKey:
        fart, safe = inputs.factors, inputs.safe
        return ScoresKey(
            parents=(fart.id, inputs.dataset.id), rows=None if inputs.subset is None else inputs.subset.how,
            factors=fart.id, dataset=inputs.dataset.id, model=inputs.mref.identity(), model_fingerprint=inputs.fingerprint,
            strategy=inputs.strategy, toxic_queries=inputs.toxic.describe(), safe_queries=safe.describe() if safe else None,
            weights="toxic +1/N_tox, safe -1/N_safe" if safe else "toxic +1/N_tox", max_queries=config.max_queries,
            query_seed=config.query_seed, query_low_rank=config.query_low_rank, damping=damping_label(config),
            precision=inputs.precision, factors_precision=fart.config.get("precision"), per_module=config.per_module)

    def describe(self, inputs: ScoresInputs, config: ScoresConfig) -> str:
        does = "toxic − safe queries" if inputs.safe is not None else "toxic queries only"
        return f"score every training token ({does})"

    def build(self, ctx: BuildContext, inputs: ScoresInputs, config: ScoresConfig) -> dict[str, Any]:
        engine = InfluenceEngine(inputs.model, inputs.modules, inputs.dinfo, inputs.precision, debug=self.debug)
        return _score(ctx, inputs, config, engine, self.reporter)


def compute_scores(ws, factors_ref: str, toxic_ref: str, safe_ref: str | None, cfg: ScoresConfig, *,
                   data_ref: str | None = None, corpus: dict | None = None, model_ref: str | None = None, reporter=NULL,
                   force: bool = False, name: str | None = None, debug: bool = False) -> Result[dict[str, Any]]:
    """Token-wise differential influence of the training rows (a `scores` artifact).

    `corpus`: the `CorpusConfig` options of `data_ref` (a source is tokenized like the factors' dataset, which
    is reused when it is that source's). `cfg.max_rows` / `cfg.rows_file` score part of the rows (see `subset`).
    """
    stage = ScoresStage(reporter, debug)
    inputs = stage.inputs(ws, ScoresRefs(factors_ref, toxic_ref, safe_ref, cfg, data_ref, corpus, model_ref))
    if inputs.dinfo.main and inputs.factors.config.get("precision") == "bf16":
        notes.warn(BF16_FACTORS_NOTE)
    return run_stage(ws, stage, inputs, cfg, name=name, force=force, device=influence_device(cfg.device))


# ---- resolving and checking the inputs -------------------------------------------------------
def _scoring_model(ws, fart: Artifact, model_ref: str | None):
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


def _scoring_rows(ws, fart: Artifact, mref, data_ref: str | None, corpus: dict, dinfo, reporter):
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


def _fitted_model(ws, fart: Artifact, mref):
    """The model with the factors' tracked modules; its weights must be the ones the factors were fit on."""
    model, modules, fingerprint = load_model_for_influence(mref, resolve_family(mref, ws, family_spec=fart.config["family"]))
    if fingerprint != fart.config.get("model_fingerprint") or modules != fart.config.get("modules"):
        raise IfguideError(f"factors {fart.id} were fit on other weights than {describe_model(mref.identity())} "
                           "(the model changed since, or the factors come from another model)",
                           hint="refit the factors for this model (`ifguide factors ...`)", exit_code=2)
    return model, modules, fingerprint


# ---- the build: run (or resume), save, summarise ---------------------------------------------
def _score(ctx: BuildContext, inputs: ScoresInputs, cfg: ScoresConfig, engine: InfluenceEngine, reporter) -> dict:
    """The build step: scores.safetensors in the staging folder (resumed if a run was killed), and its summary."""
    from safetensors.torch import load_file

    from ifguide_cli.core.data import load_corpus

    corpus, batch_size = load_corpus(inputs.dataset), cfg.batch_size or default_batch_size(inputs.shape[1])
    out_file, module_file = ctx.staging / SCORES_FILE, ctx.staging / MODULE_SCORES_FILE
    drop_half_written([out_file, module_file], inputs.dinfo)  # a result file a killed run left is recomputed
    elapsed = 0.0
    if not (out_file.exists() and (not cfg.per_module or module_file.exists())):
        elapsed = _run(ctx, inputs, cfg, corpus, batch_size, engine, reporter)
    if not inputs.dinfo.main:
        return {}
    rows = None if inputs.subset is None else inputs.subset.indices
    summary = score_summary(load_file(str(out_file))["scores"], corpus, inputs.toxic, inputs.safe, elapsed,
                            inputs.dinfo.world, rows=rows)
    summary.update({"damping": damping_label(cfg), "precision": inputs.precision, "strategy": inputs.strategy,
                    "batch_size": batch_size, "partitions": cfg.partitions})
    heuristic = heuristic_damping(inputs.factors_dir, inputs.strategy) if cfg.damping is None else None
    if heuristic:
        summary["damping_heuristic_min"] = min(heuristic.values())
        summary["damping_heuristic_max"] = max(heuristic.values())
    return summary


def _run(ctx: BuildContext, inputs: ScoresInputs, cfg: ScoresConfig, corpus, batch_size: int, engine: InfluenceEngine,
         reporter) -> float:
    """kronfluence's pass over the training rows (resuming finished partitions); rank 0 saves. Returns seconds."""
    dinfo = inputs.dinfo
    note = prepare_staging(ctx.staging, {"partitions": cfg.partitions}, dinfo, ctx.staging / KRON_DIR)
    if note:
        notes.warn(note)
    rows = None if inputs.subset is None else inputs.subset.indices
    train = CorpusRows(corpus.input_ids, corpus.attention_mask, rows=rows, with_index=True)
    start = time.perf_counter()
    with ctx.timed("scores"):
        raw = engine.scores(ctx.staging, inputs.factors_dir, train, inputs.queries, damping=cfg.damping,
                            per_module=cfg.per_module, batch_size=batch_size, query_batch_size=cfg.query_batch_size,
                            partitions=cfg.partitions, query_low_rank=cfg.query_low_rank,
                            reporter=reporter if dinfo.main else NULL)
    elapsed = time.perf_counter() - start
    if dinfo.main:
        _save(ctx.staging, raw, cfg.per_module, corpus.shape[0], rows)
    dist.barrier()
    return elapsed


def _save(staging: Path, raw: dict, per_module: bool, n_rows: int, rows: list[int] | None) -> None:
    """Label-aligned scores (and per-module ones) replace kronfluence's raw copy in the staging folder.

    Scores of part of the rows are placed at their rows of a (n_rows, T) tensor (0 elsewhere), with the
    scored rows' indices under `rows`."""
    import torch

    aligned = {k: _placed(align_to_labels(v), n_rows, rows) for k, v in raw.items()}
    total = aligned["all_modules"] if "all_modules" in aligned else torch.stack(list(aligned.values())).sum(0)
    extra = {} if rows is None else {ROWS_KEY: torch.tensor(rows, dtype=torch.int64)}
    if per_module:
        atomic_save({k: v.contiguous() for k, v in aligned.items()}, staging / MODULE_SCORES_FILE)
    atomic_save({"scores": total.contiguous(), **extra}, staging / SCORES_FILE)
    for p in (staging / KRON_DIR).rglob("pairwise_scores*.safetensors"):  # the raw copy; scores.safetensors replaces it
        p.unlink()
    (staging / RUN_FILE).unlink(missing_ok=True)


def _placed(scores, n_rows: int, rows: list[int] | None):
    """Scores of the rows `rows` (in that order) placed in a zero (n_rows, T) tensor; all rows as they are."""
    import torch

    if rows is None:
        return scores
    out = torch.zeros((n_rows, scores.shape[1]), dtype=scores.dtype)
    out[torch.tensor(rows, dtype=torch.long)] = scores
    return out


# ---- reference: the two-run difference (tests, benchmark) ------------------------------------
def two_run_reference(engine: InfluenceEngine, output_dir: Path, factors_dir: Path, train, toxic: QuerySet,
                      safe: QuerySet, pad_id: int, *, damping: float | None, batch_size: int, query_batch_size: int = 16):
    """(toxic run with weights 1/N_tox) − (safe run with weights 1/N_safe), label-aligned (N, T)."""
    runs = []
    for name, qs in (("toxic_only", toxic), ("safe_only", safe)):
        rows = build_query_rows([(qs.ids, qs.n_prompt, 1.0 / len(qs.ids))], pad_id)
        raw = engine.scores(output_dir, factors_dir, train, rows, damping=damping, per_module=False, batch_size=batch_size,
                            query_batch_size=query_batch_size, partitions=1, name=name)
        runs.append(align_to_labels(raw["all_modules"]))
    return runs[0] - runs[1]
