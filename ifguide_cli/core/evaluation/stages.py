"""The eval stages as artifacts: toxicity (sample, classify), implicit (re-score saved continuations), fluency.

Each stage is an `evals` artifact whose config is its identity (model, data, generation settings, defense,
classifier, dtype), so the same request is reused. Evals run in one process: under torchrun only rank 0
evaluates. A toxicity eval saves every finished generation batch in staging, so an interrupted run resumes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from ifguide_cli.core.dist import is_main_process
from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.evaluation.config import DefenseConfig, FluencyConfig, GenerationConfig, RuntimeConfig, dtype_identity
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
from ifguide_cli.core.progress import NULL
from ifguide_cli.core.store.artifact_files import PERPLEXITY_DOCS_FILE
from ifguide_cli.core.store.workspace import kind_noun

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


def resolve_defense(workspace, defense: DefenseConfig):
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
def evaluate_toxicity(workspace, mref, prompts_ref: str, generation: GenerationConfig, classifier_spec, *,
                      num_prompts: int | None = None, defense: DefenseConfig = DefenseConfig(), reward_art=None,
                      runtime: RuntimeConfig = RuntimeConfig(), classifier_batch_size: int = 64, name: str | None = None,
                      queries: Sequence[str] = (), force: bool = False, reporter=NULL):
    """Sample, classify, and store an eval artifact. Returns (artifact, reused).

    `queries`: influence query sets to count shared prompts with (see `leakage`); an RTP reference prompt
    subset is checked against the reference's query sets without them."""
    from ifguide_cli.core.classifiers import load_classifier

    device, precision = runtime.resolve()
    prompts, prompt_identity = load_eval_prompts(prompts_ref, num_prompts)  # same subset for every model and seed
    reward_id = reward_art.id if reward_art is not None else None
    config = {"task": "toxicity", "model": mref.identity(), "prompts": prompt_identity, "generation": generation.to_dict(),
              "defense": defense.identity(reward_id), "classifier": classifier_spec.identity,
              "dtype": dtype_identity(precision)}
    if queries:  # only when given: an eval made before `--queries` existed keeps its id
        config["leakage_queries"] = query_sets_identity(queries)
    overlap = eval_leakage(prompts_ref, prompts, queries)
    parents = [*mref.parents, *classifier_spec.parents, *([reward_id] if reward_id else [])]

    def build(ctx):
        if not is_main_process():
            return {}
        partial = ctx.staging / PARTIAL
        done = _read_partial(partial)
        # the classifier first: a missing classifier fails before the (long) generation
        classifier = load_classifier(classifier_spec, device=device, batch_size=classifier_batch_size)
        model, tok = load_lm(mref, device, precision)
        factory = _defense_factory(reward_art, tok, defense, device, generation.max_new_tokens)
        with ctx.timed("generate"):
            conts = generate_continuations(model, tok, [p["prompt"] for p in prompts], generation, device=device,
                                           processor_factory=factory, done=done, on_batch=_appender(partial),
                                           reporter=reporter)
        del model
        records = [{"prompt": p["prompt"], "toxic": p["toxic"], "continuations": c} for p, c in zip(prompts, conts, strict=True)]
        with ctx.timed("classify"):
            records = _score_records(records, classifier, reporter)
        partial.unlink(missing_ok=True)
        extra = {"task": "toxicity", "model": mref.ref, "defense": defense.label(), "prompt_set": prompts_ref,
                 "samples": generation.samples, **({"leakage": overlap.to_json()} if overlap is not None else {})}
        return _finish_scored(ctx, records, classifier, extra)

    art, reused = workspace.create("evals", config, parents, build, name=name, force=force, device=device)
    warn_leakage(art.summary)
    return art, reused


def warn_leakage(summary: dict) -> None:
    """The note for an eval whose prompts are also influence queries (a new eval's or a reused one's)."""
    found = summary.get("leakage")
    message = Overlap(**found).message() if found else None
    if message:
        warn(message)


def rescore_eval(workspace, source, classifier_spec, *, runtime: RuntimeConfig = RuntimeConfig(),
                 classifier_batch_size: int = 64, name: str | None = None, force: bool = False, reporter=NULL):
    """Re-score the continuations saved in eval `source` with another classifier (implicit toxicity)."""
    from ifguide_cli.core.classifiers import load_classifier

    continuations_path(source)
    device, _ = runtime.resolve()
    config = {"task": "implicit", "source": source.id, "classifier": classifier_spec.identity}
    parents = [source.id, *classifier_spec.parents]

    def build(ctx):
        if not is_main_process():
            return {}
        classifier = load_classifier(classifier_spec, device=device, batch_size=classifier_batch_size)
        with ctx.timed("classify"):
            scored = _score_records(read_continuations(source), classifier, reporter)
        src = source.summary
        extra = {"task": "implicit", "model": src.get("model"), "defense": src.get("defense", "none"),
                 "prompt_set": src.get("prompt_set"), "samples": src.get("samples"), "source_eval": source.id,
                 "source_classifier": src.get("classifier"), **({"leakage": src["leakage"]} if src.get("leakage") else {})}
        return _finish_scored(ctx, scored, classifier, extra)

    art, reused = workspace.create("evals", config, parents, build, name=name, force=force, device=device)
    warn_leakage(art.summary)
    return art, reused


# ---- fluency -----------------------------------------------------------------------------------
def _load_texts(ref: str | None, role: str, **kwargs) -> tuple[list[str] | None, dict | None]:
    """(texts, identity with the document count) of a fluency data set; (None, None) when it is skipped."""
    if ref is None:
        return None, None
    if reference_subset(ref) is not None:
        return reference_texts(ref, role, kwargs.get("limit"))
    from ifguide_cli.core.data import load_records, record_text

    records, ident = load_records(ref, **kwargs)
    texts = [record_text(r) for r in records]
    return texts, {**ident, "docs": len(texts)}


def _perplexity_input(mref, config: FluencyConfig, data: FluencyData):
    """(texts or TokenChunks, identity) of the perplexity data; (None, None) when perplexity is skipped."""
    chunks = token_chunks(data.ppl_data, config) if data.ppl_data else None
    if chunks is None:
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


def _fluency_identity(mref, config: FluencyConfig, ppl_identity, lambada_identity, metrics, defense, reward_id, precision):
    """The fluency eval's identity. The LAMBADA metric is in it only when it is not whole-word alone, the only
    metric before there were two, so an eval made then is still found for the same request."""
    stage = {"task": "fluency", "model": mref.identity(), "perplexity_data": ppl_identity, "lambada_data": lambada_identity,
             "max_length": config.max_length, "defense": defense.identity(reward_id), "dtype": dtype_identity(precision)}
    if metrics and metrics != ("whole-word",):
        stage["lambada_metrics"] = list(metrics)
    return stage


def evaluate_fluency(workspace, mref, config: FluencyConfig = FluencyConfig(), *, defense: DefenseConfig = DefenseConfig(),
                     reward_art=None, runtime: RuntimeConfig = RuntimeConfig(), name: str | None = None, force: bool = False,
                     reporter=NULL):
    """Perplexity and LAMBADA accuracy; with RAD only LAMBADA (RAD changes decoding, not the model's likelihood)."""
    device, precision = runtime.resolve()
    data = fluency_data(mref, config, defense)
    ppl_source, ppl_identity = _perplexity_input(mref, config, data)
    lambada_texts, lambada_identity = _load_texts(data.lambada, "lambada", limit=config.lambada_docs)
    metrics = config.lambada_metrics(data.lambada) if lambada_texts is not None else ()
    reward_id = reward_art.id if reward_art is not None else None
    stage = _fluency_identity(mref, config, ppl_identity, lambada_identity, metrics, defense, reward_id, precision)
    parents = [*mref.parents, *([reward_id] if reward_id else [])]

    def build(ctx):
        if not is_main_process():
            return {}
        model, tok = load_lm(mref, device, precision)
        summary = {"task": "fluency", "model": mref.ref, "defense": defense.label(), "perplexity": None,
                   "lambada_accuracy": None}
        details: dict = {}
        if ppl_source is not None:
            part, details["perplexity"] = _perplexity_step(ctx, model, tok, ppl_source, config, data, device, reporter)
            summary.update(part)
        if lambada_texts is not None:
            factory = _defense_factory(reward_art, tok, defense, device)
            part, details["lambada"] = _lambada_step(ctx, model, tok, lambada_texts, metrics, config, data, factory, device,
                                                     reporter)
            summary.update(part)
        (ctx.staging / METRICS).write_text(json.dumps({**summary, **details}, indent=2))
        return summary

    return workspace.create("evals", stage, parents, build, name=name, force=force, device=device)
