"""The eval stages as artifacts: toxicity (sample, classify), implicit (re-score saved continuations), fluency.

Each is a `Stage` (`core/stage.py`) making an `evals` artifact whose key (`ToxicityKey`, `ImplicitKey`,
`FluencyKey`: model, data, generation settings, defense, classifier, precision) is its identity, so the same
request is reused. Evals run in one process: under torchrun only rank 0
evaluates. A toxicity eval saves every finished generation batch in staging, so an interrupted run resumes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ifguide_cli.core.dist import is_main_process
from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.evaluation.config import DefenseConfig, FluencyConfig, GenerationConfig, RuntimeConfig
from ifguide_cli.core.evaluation.fluency import chunk_perplexity, lambada_metrics, perplexity
from ifguide_cli.core.evaluation.generation import generate_continuations
from ifguide_cli.core.evaluation.inputs import (
    FluencyData,
    TokenChunks,
    fluency_data,
    load_eval_prompts,
    reference_subset,
    reference_texts,
    token_chunks,
)
from ifguide_cli.core.evaluation.leakage import eval_leakage, query_sets_identity
from ifguide_cli.core.evaluation.metrics import LAMBADA_METRICS, summarize_scores
from ifguide_cli.core.notes import warn
from ifguide_cli.core.paper.leakage import Overlap
from ifguide_cli.core.progress import NULL, Reporter
from ifguide_cli.core.stage import ArtifactKey, Result, Stage, run_stage
from ifguide_cli.core.store.artifact_files import PERPLEXITY_DOCS_FILE
from ifguide_cli.core.store.workspace import kind_noun

if TYPE_CHECKING:
    from ifguide_cli.core.classifiers.spec import ClassifierSpec
    from ifguide_cli.core.models import ModelRef
    from ifguide_cli.core.store.workspace import Artifact, BuildContext, Workspace

CONTINUATIONS = "continuations.jsonl"
METRICS = "metrics.json"
PARTIAL = "generations.partial.jsonl"
LAMBADA_FILE = "lambada.jsonl"


# ---- eval artifact files -----------------------------------------------------------------------
def continuations_path(art) -> Path:
    """The continuations file of a toxicity eval; one clear error for any other artifact."""
    path = art.path / CONTINUATIONS
    if art.kind != "evals" or not path.is_file():
        task = art.config.get("task", art.kind)
        raise IfguideError(f"{kind_noun(art.kind)} artifact {art.id} has no saved continuations ({task} eval)",
                           hint="pass an artifact written by `ifguide eval toxicity` (or `eval implicit`)", exit_code=2)
    return path


def read_continuations(art) -> list[dict]:
    with open(continuations_path(art), encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def read_perplexity_docs(art) -> tuple[list[float], list[int]] | None:
    """(per-document NLL sums, predicted tokens) of a fluency eval; None for one made before they were stored."""
    path = art.path / PERPLEXITY_DOCS_FILE
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    return [r["nll"] for r in rows], [r["tokens"] for r in rows]


def _write_jsonl(path: Path, records) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")


def write_continuations(folder: Path, records: Sequence[dict]) -> None:
    _write_jsonl(folder / CONTINUATIONS, records)


def _read_partial(partial: Path) -> dict[int, list]:
    """The generation batches finished before an interruption (a torn last line is regenerated)."""
    done: dict[int, list] = {}
    if partial.is_file():
        for line in partial.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
                done[entry["batch"]] = entry["continuations"]
            except (ValueError, KeyError):
                break
    return done


def _appender(partial: Path):
    def save(b: int, conts: list) -> None:
        with open(partial, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"batch": b, "continuations": conts}, ensure_ascii=False) + "\n")

    return save


# ---- shared steps ------------------------------------------------------------------------------
def _score_records(records: list[dict], classifier, reporter) -> list[dict]:
    flat = [c for r in records for c in r["continuations"]]
    scores = classifier.score(flat, reporter)
    out, pos = [], 0
    for r in records:
        n = len(r["continuations"])
        out.append({"prompt": r["prompt"], "toxic": r.get("toxic"), "continuations": r["continuations"],
                    "scores": {a: [round(float(s), 6) for s in scores[a][pos:pos + n]] for a in classifier.attributes}})
        pos += n
    return out


def _headline(metrics: dict) -> dict:
    return {k: metrics[k] for k in ("expected_max_toxicity", "expected_max_toxicity_std", "toxicity_probability",
                                    "prompts", "primary_attribute", "splits", "per_attribute")}


def _finish_scored(ctx, records, classifier, extra: dict) -> dict:
    metrics = summarize_scores(records, classifier.attributes)
    write_continuations(ctx.staging, records)
    (ctx.staging / METRICS).write_text(json.dumps({**extra, **metrics}, indent=2))
    return {**extra, "classifier": classifier.name, **_headline(metrics)}


def load_lm(mref, device: str, precision: str = "fp32"):
    from ifguide_cli.core.config import torch_dtype
    from ifguide_cli.core.models import load_model, load_tokenizer

    model = load_model(mref, dtype=torch_dtype(precision)).to(device).eval()
    return model, load_tokenizer(mref)


def resolve_defense(workspace: Workspace, defense: DefenseConfig):
    """The reward-model artifact a defense needs (None without one); one clear line when it is not installed."""
    if defense.method != "rad":
        return None
    from ifguide_cli.core.rad.decoding import resolve_reward_model

    return resolve_reward_model(workspace, defense.reward_model)


def rad_factory(reward_art, lm_tokenizer, defense: DefenseConfig, device: str, max_new_tokens: int = 64):
    """A function attention_mask -> fresh RADLogitsProcessor (the reward model is loaded once)."""
    from ifguide_cli.core.rad.decoding import RADLogitsProcessor, load_reward_model

    rm, rm_tok, _ = load_reward_model(reward_art, device=device)

    def make(attention_mask):
        proc = RADLogitsProcessor(rm, lm_tokenizer, rm_tok, beta=defense.beta, topk=defense.topk,
                                  max_new_tokens=max_new_tokens)
        proc.set_prompt_mask(attention_mask)
        return proc

    return make


def _defense_factory(reward_art, tok, defense: DefenseConfig, device: str, max_new_tokens: int = 64):
    """The defense's logits-processor factory for `generate` (None without a defense)."""
    return rad_factory(reward_art, tok, defense, device, max_new_tokens) if defense.method == "rad" else None


# ---- toxicity ----------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class ToxicityKey(ArtifactKey):
    """What identifies a toxicity eval: the model, the prompts, how continuations are sampled, decoded and scored."""

    kind: ClassVar[str] = "evals"
    task: str = field(default="toxicity", init=False)
    model: dict[str, Any]
    prompts: dict[str, Any]
    generation: dict[str, Any]
    defense: dict[str, Any]
    classifier: dict[str, Any]
    dtype: str
    leakage_queries: list[dict[str, Any]] | None = None  # the influence query sets the prompts were checked against


@dataclass(frozen=True)
class ToxicityRefs:
    """What `ifguide eval toxicity` is given: the model, the prompt set, the classifier and the decoding defense."""

    model: ModelRef
    prompts: str
    classifier: ClassifierSpec
    num_prompts: int | None = None
    defense: DefenseConfig = field(default_factory=DefenseConfig)
    reward_model: Artifact | None = None  # the defense's reward model (`resolve_defense`)
    queries: tuple[str, ...] = ()  # influence query sets to count shared prompts with (see `leakage`)


@dataclass(frozen=True)
class ToxicityInputs:
    """The prompts read (the seeded subset when asked), their identity, and how many are also influence queries."""

    refs: ToxicityRefs
    prompts: list[dict]
    prompt_identity: dict[str, Any]
    leakage: Overlap | None


@dataclass(frozen=True)
class ScoringSettings:
    """Where the model and classifier run, and how many texts the classifier scores at once."""

    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    classifier_batch_size: int = 64


@dataclass(frozen=True)
class ToxicitySettings(ScoringSettings):
    """How continuations are sampled, and where they are generated and scored."""

    generation: GenerationConfig = field(default_factory=GenerationConfig)


def _parent_ids(*groups) -> tuple[str, ...]:
    return tuple(pid for group in groups for pid in group)


class ToxicityStage(Stage[ToxicityRefs, ToxicityInputs, ToxicitySettings, dict[str, Any]]):
    """`ifguide eval toxicity`: sample continuations of every prompt, score them, store EMT and TP."""

    kind = "evals"

    def __init__(self, reporter: Reporter = NULL):
        self.reporter = reporter

    def inputs(self, ws: Workspace, refs: ToxicityRefs) -> ToxicityInputs:
        prompts, identity = load_eval_prompts(refs.prompts, refs.num_prompts)  # same subset for every model and seed
        return ToxicityInputs(refs, prompts, identity, eval_leakage(refs.prompts, prompts, refs.queries))

    def key(self, inputs: ToxicityInputs, config: ToxicitySettings) -> ToxicityKey:
        refs = inputs.refs
        reward = [refs.reward_model.id] if refs.reward_model is not None else []
        return ToxicityKey(parents=_parent_ids(refs.model.parents, refs.classifier.parents, reward),
                           model=refs.model.identity(), prompts=inputs.prompt_identity,
                           generation=config.generation.to_dict(), defense=refs.defense.identity(*reward),
                           classifier=refs.classifier.identity, dtype=config.runtime.resolve()[1],
                           leakage_queries=query_sets_identity(refs.queries) if refs.queries else None)

    def describe(self, inputs: ToxicityInputs, config: ToxicitySettings) -> str:
        g = config.generation
        return (f"sample {g.samples} continuations of {g.max_new_tokens} tokens for {len(inputs.prompts):,} prompts and "
                f"score them with {inputs.refs.classifier.name}")

    def build(self, ctx: BuildContext, inputs: ToxicityInputs, config: ToxicitySettings) -> dict[str, Any]:
        if not is_main_process():
            return {}
        from ifguide_cli.core.classifiers import load_classifier

        refs, generation = inputs.refs, config.generation
        device, precision = config.runtime.resolve()
        partial = ctx.staging / PARTIAL
        done = _read_partial(partial)
        # the classifier first: a missing classifier fails before the (long) generation
        classifier = load_classifier(refs.classifier, device=device, batch_size=config.classifier_batch_size)
        model, tok = load_lm(refs.model, device, precision)
        factory = _defense_factory(refs.reward_model, tok, refs.defense, device, generation.max_new_tokens)
        with ctx.timed("generate"):
            conts = generate_continuations(model, tok, [p["prompt"] for p in inputs.prompts], generation, device=device,
                                           processor_factory=factory, done=done, on_batch=_appender(partial),
                                           reporter=self.reporter)
        del model
        records = [{"prompt": p["prompt"], "toxic": p["toxic"], "continuations": c}
                   for p, c in zip(inputs.prompts, conts, strict=True)]
        with ctx.timed("classify"):
            records = _score_records(records, classifier, self.reporter)
        partial.unlink(missing_ok=True)
        leakage = {"leakage": inputs.leakage.to_json()} if inputs.leakage is not None else {}
        extra = {"task": "toxicity", "model": refs.model.ref, "defense": refs.defense.label(), "prompt_set": refs.prompts,
                 "samples": generation.samples, **leakage}
        return _finish_scored(ctx, records, classifier, extra)


def evaluate_toxicity(workspace: Workspace, mref: ModelRef, prompts_ref: str, generation: GenerationConfig,
                      classifier_spec: ClassifierSpec, *, num_prompts: int | None = None,
                      defense: DefenseConfig = DefenseConfig(), reward_art: Artifact | None = None,
                      runtime: RuntimeConfig = RuntimeConfig(), classifier_batch_size: int = 64, name: str | None = None,
                      queries: Sequence[str] = (), force: bool = False, reporter: Reporter = NULL) -> Result[dict[str, Any]]:
    """The toxicity stage from its references: sample, classify, store (or reuse) the eval, note shared prompts.

    `queries`: influence query sets to count shared prompts with (see `leakage`); an RTP reference prompt
    subset is checked against the reference's query sets without them."""
    check_generation_fits(mref, generation.max_new_tokens)
    stage = ToxicityStage(reporter)
    inputs = stage.inputs(workspace, ToxicityRefs(mref, prompts_ref, classifier_spec, num_prompts, defense, reward_art,
                                                  tuple(queries)))
    settings = ToxicitySettings(runtime=runtime, classifier_batch_size=classifier_batch_size, generation=generation)
    result = run_stage(workspace, stage, inputs, settings, name=name, force=force, device=runtime.resolve()[0])
    warn_leakage(result.summary)
    return result


def check_generation_fits(mref, max_new_tokens: int, option: str = "--max-new-tokens") -> None:
    """`max_new_tokens` (given as `option`) leaves room for a prompt in the model's context, as --seq-len is checked
    against it: a pipeline checks its eval.max_new_tokens this way before it trains anything."""
    from ifguide_cli.core.models import model_context

    context = model_context(mref)
    if context is not None and max_new_tokens >= context:
        raise IfguideError(f"{option} {max_new_tokens} does not fit {mref.ref!r}'s context of {context} tokens (the "
                           "prompt needs at least one)", hint=f"set {option} to at most {context - 1}", exit_code=2)


def warn_leakage(summary: dict) -> None:
    """The note for an eval whose prompts are also influence queries (a new eval's or a reused one's)."""
    found = summary.get("leakage")
    message = Overlap(**found).message() if found else None
    if message:
        warn(message)


# ---- implicit toxicity: re-scoring saved continuations -------------------------------------------
@dataclass(frozen=True, kw_only=True)
class ImplicitKey(ArtifactKey):
    """What identifies a re-scoring: the toxicity eval whose continuations are scored, and the classifier."""

    kind: ClassVar[str] = "evals"
    task: str = field(default="implicit", init=False)
    source: str
    classifier: dict[str, Any]


@dataclass(frozen=True)
class ImplicitRefs:
    """What `ifguide eval implicit` is given: a toxicity eval (with saved continuations) and another classifier."""

    source: Artifact
    classifier: ClassifierSpec


class ImplicitStage(Stage[ImplicitRefs, ImplicitRefs, ScoringSettings, dict[str, Any]]):
    """`ifguide eval implicit`: re-score the continuations a toxicity eval saved with another classifier."""

    kind = "evals"

    def __init__(self, reporter: Reporter = NULL):
        self.reporter = reporter

    def inputs(self, ws: Workspace, refs: ImplicitRefs) -> ImplicitRefs:
        continuations_path(refs.source)  # one line when there is nothing to re-score
        return refs

    def key(self, inputs: ImplicitRefs, config: ScoringSettings) -> ImplicitKey:
        return ImplicitKey(parents=(inputs.source.id, *inputs.classifier.parents), source=inputs.source.id,
                           classifier=inputs.classifier.identity)

    def describe(self, inputs: ImplicitRefs, config: ScoringSettings) -> str:
        return f"re-score the continuations of eval {inputs.source.id} with {inputs.classifier.name}"

    def build(self, ctx: BuildContext, inputs: ImplicitRefs, config: ScoringSettings) -> dict[str, Any]:
        if not is_main_process():
            return {}
        from ifguide_cli.core.classifiers import load_classifier

        classifier = load_classifier(inputs.classifier, device=config.runtime.resolve()[0],
                                     batch_size=config.classifier_batch_size)
        with ctx.timed("classify"):
            scored = _score_records(read_continuations(inputs.source), classifier, self.reporter)
        src = inputs.source.summary
        extra = {"task": "implicit", "model": src.get("model"), "defense": src.get("defense", "none"),
                 "prompt_set": src.get("prompt_set"), "samples": src.get("samples"), "source_eval": inputs.source.id,
                 "source_classifier": src.get("classifier"), **({"leakage": src["leakage"]} if src.get("leakage") else {})}
        return _finish_scored(ctx, scored, classifier, extra)


def rescore_eval(workspace: Workspace, source: Artifact, classifier_spec: ClassifierSpec, *,
                 runtime: RuntimeConfig = RuntimeConfig(), classifier_batch_size: int = 64, name: str | None = None,
                 force: bool = False, reporter: Reporter = NULL) -> Result[dict[str, Any]]:
    """Re-score the continuations saved in eval `source` with another classifier (implicit toxicity)."""
    stage = ImplicitStage(reporter)
    inputs = stage.inputs(workspace, ImplicitRefs(source, classifier_spec))
    result = run_stage(workspace, stage, inputs, ScoringSettings(runtime, classifier_batch_size), name=name, force=force,
                       device=runtime.resolve()[0])
    warn_leakage(result.summary)
    return result


# ---- fluency -----------------------------------------------------------------------------------
def _load_texts(ref: str | None, role: str, **kwargs) -> tuple[list[str] | None, dict | None]:
    """(texts, identity with the document count) of a fluency data set; (None, None) when it is skipped."""
    if ref is None:
        return None, None
    if reference_subset(ref) is not None:
        return reference_texts(ref, role, kwargs.get("limit"))
    from ifguide_cli.core.data import load_records, record_text

    records, ident = load_records(ref, **kwargs)
    option = {"heldout": "--ppl-data", "lambada": "--lambada"}.get(role, role)
    try:
        texts = [record_text(r, where=f"{ref} record {n + 1}") for n, r in enumerate(records)]
    except IfguideError as exc:  # a record without text: which option gave the file
        raise IfguideError(f"{option}: {exc.message}", hint="every record needs a `text` field", exit_code=2) from None
    return texts, {**ident, "docs": len(texts)}


def _perplexity_input(mref, config: FluencyConfig, data: FluencyData):
    """(texts or TokenChunks, identity) of the perplexity data; (None, None) when perplexity is skipped."""
    chunks = token_chunks(data.ppl_data, config) if data.ppl_data else None
    if chunks is None or not data.ppl_data:
        return _load_texts(data.ppl_data, "heldout", split=data.ppl_split, limit=config.ppl_docs)
    from ifguide_cli.core.paper.subsets import note_foreign_tokenizer

    note_foreign_tokenizer(data.ppl_data, mref.tokenizer)
    return chunks, chunks.identity


def _perplexity_step(ctx, model, tok, source, config: FluencyConfig, data: FluencyData, device, reporter):
    with ctx.timed("perplexity"):
        if isinstance(source, TokenChunks):
            ppl = chunk_perplexity(model, source.blocks(), chunks=source.count, batch_size=config.batch_size, device=device,
                                   reporter=reporter)
        else:
            ppl = perplexity(model, tok, source, batch_size=config.batch_size, max_length=config.max_length, device=device,
                             reporter=reporter)
    docs = ppl.pop("per_document")
    _write_jsonl(ctx.staging / PERPLEXITY_DOCS_FILE, ({"nll": nll, "tokens": n} for nll, n in zip(docs["nll"], docs["tokens"],
                                                                                                   strict=True)))
    summary = {"perplexity": ppl["perplexity"], "perplexity_tokens": ppl["tokens"], "perplexity_data": data.ppl_data}
    return summary, ppl


def _lambada_step(ctx, model, tok, texts, metrics: tuple[str, ...], config: FluencyConfig, data: FluencyData, factory,
                  device, reporter):
    """The LAMBADA metrics asked for; `lambada_accuracy` (and each line's `correct`) is the first one's."""
    with ctx.timed("lambada"):
        results = lambada_metrics(model, tok, texts, metrics, batch_size=config.batch_size, device=device,
                                  processor_factory=factory, reporter=reporter)
    headline = results[LAMBADA_METRICS[metrics[0]]]
    per_metric = {name: r["correct"] for name, r in results.items()} if len(results) > 1 else {}
    _write_jsonl(ctx.staging / LAMBADA_FILE, ({"text": t, "correct": ok, **{k: v[i] for k, v in per_metric.items()}}
                                              for i, (t, ok) in enumerate(zip(texts, headline["correct"], strict=True))))
    details = {"lambada_accuracy": headline["value"], "lambada_examples": len(texts)}
    named = {name: r["value"] for name, r in results.items()}
    summary = {**details, "lambada_data": data.lambada, "lambada_metric": metrics[0], **named}
    return summary, {**details, "lambada_metric": metrics[0], **named}


@dataclass(frozen=True, kw_only=True)
class FluencyKey(ArtifactKey):
    """What identifies a fluency eval: the model, the held-out text and LAMBADA data, the metrics, the defense."""

    kind: ClassVar[str] = "evals"
    task: str = field(default="fluency", init=False)
    model: dict[str, Any]
    perplexity_data: dict[str, Any] | None
    lambada_data: dict[str, Any] | None
    max_length: int | None
    defense: dict[str, Any]
    dtype: str
    lambada_metrics: tuple[str, ...] = ()  # the LAMBADA metrics computed, the headline first (none without LAMBADA)


@dataclass(frozen=True)
class FluencyRefs:
    """What `ifguide eval fluency` is given: the model, the data options (`FluencyConfig` names the data sets) and
    the decoding defense."""

    model: ModelRef
    data: FluencyConfig = field(default_factory=FluencyConfig)
    defense: DefenseConfig = field(default_factory=DefenseConfig)
    reward_model: Artifact | None = None


@dataclass(frozen=True)
class FluencyInputs:
    """The data read, with their identities: held-out text (or token chunks) and LAMBADA passages; None: skipped."""

    refs: FluencyRefs
    data: FluencyData
    ppl_source: list[str] | TokenChunks | None
    ppl_identity: dict[str, Any] | None
    lambada_texts: list[str] | None
    lambada_identity: dict[str, Any] | None
    metrics: tuple[str, ...]


class FluencyStage(Stage[FluencyRefs, FluencyInputs, RuntimeConfig, dict[str, Any]]):
    """`ifguide eval fluency`: perplexity and LAMBADA accuracy; with RAD only LAMBADA (RAD changes decoding, not the
    model's likelihood)."""

    kind = "evals"

    def __init__(self, reporter: Reporter = NULL):
        self.reporter = reporter

    def inputs(self, ws: Workspace, refs: FluencyRefs) -> FluencyInputs:
        config = refs.data
        data = fluency_data(refs.model, config, refs.defense, ws)
        ppl_source, ppl_identity = _perplexity_input(refs.model, config, data)
        lambada_texts, lambada_identity = _load_texts(data.lambada, "lambada", limit=config.lambada_docs)
        metrics = config.lambada_metrics(data.lambada) if lambada_texts is not None else ()
        return FluencyInputs(refs, data, ppl_source, ppl_identity, lambada_texts, lambada_identity, metrics)

    def key(self, inputs: FluencyInputs, config: RuntimeConfig) -> FluencyKey:
        refs = inputs.refs
        reward = [refs.reward_model.id] if refs.reward_model is not None else []
        return FluencyKey(parents=_parent_ids(refs.model.parents, reward), model=refs.model.identity(),
                          perplexity_data=inputs.ppl_identity, lambada_data=inputs.lambada_identity,
                          max_length=refs.data.max_length, defense=refs.defense.identity(*reward),
                          dtype=config.resolve()[1], lambada_metrics=inputs.metrics)

    def describe(self, inputs: FluencyInputs, config: RuntimeConfig) -> str:
        parts = [f"perplexity on {inputs.data.ppl_data}" if inputs.ppl_source is not None else "",
                 f"LAMBADA ({', '.join(inputs.metrics)}) on {inputs.data.lambada}" if inputs.metrics else ""]
        return " and ".join(p for p in parts if p)

    def build(self, ctx: BuildContext, inputs: FluencyInputs, config: RuntimeConfig) -> dict[str, Any]:
        if not is_main_process():
            return {}
        refs, data, fluency = inputs.refs, inputs.data, inputs.refs.data
        device, precision = config.resolve()
        model, tok = load_lm(refs.model, device, precision)
        summary = {"task": "fluency", "model": refs.model.ref, "defense": refs.defense.label(), "perplexity": None,
                   "lambada_accuracy": None}
        details: dict = {}
        if inputs.ppl_source is not None:
            part, details["perplexity"] = _perplexity_step(ctx, model, tok, inputs.ppl_source, fluency, data, device,
                                                           self.reporter)
            summary.update(part)
        if inputs.lambada_texts is not None:
            factory = _defense_factory(refs.reward_model, tok, refs.defense, device)
            part, details["lambada"] = _lambada_step(ctx, model, tok, inputs.lambada_texts, inputs.metrics, fluency, data,
                                                     factory, device, self.reporter)
            summary.update(part)
        (ctx.staging / METRICS).write_text(json.dumps({**summary, **details}, indent=2))
        return summary


def evaluate_fluency(workspace: Workspace, mref: ModelRef, config: FluencyConfig = FluencyConfig(), *,
                     defense: DefenseConfig = DefenseConfig(), reward_art: Artifact | None = None,
                     runtime: RuntimeConfig = RuntimeConfig(), name: str | None = None, force: bool = False,
                     reporter: Reporter = NULL) -> Result[dict[str, Any]]:
    """The fluency stage from its references: read the data, then `run_stage`."""
    stage = FluencyStage(reporter)
    inputs = stage.inputs(workspace, FluencyRefs(mref, config, defense, reward_art))
    return run_stage(workspace, stage, inputs, runtime, name=name, force=force, device=runtime.resolve()[0])
