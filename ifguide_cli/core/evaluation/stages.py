"""The eval stages as artifacts: toxicity (sample, classify), implicit (re-score saved continuations), fluency.

Each stage is an `evals` artifact whose config is its identity (model, data, generation settings, defense,
classifier, dtype), so the same request is reused. Evals run in one process: under torchrun only rank 0
evaluates. A toxicity eval saves every finished generation batch in staging, so an interrupted run resumes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from ..dist import is_main_process
from ..errors import IfguideError
from ..progress import NULL
from ..workspace import kind_noun
from .config import DefenseConfig, FluencyConfig, GenerationConfig, RuntimeConfig, dtype_identity
from .fluency import lambada_accuracy, perplexity
from .generation import generate_continuations
from .inputs import FluencyData, fluency_data, load_eval_prompts
from .metrics import summarize_scores

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
    from ..config import torch_dtype
    from ..models import load_model, load_tokenizer

    model = load_model(mref, dtype=torch_dtype(precision)).to(device).eval()
    return model, load_tokenizer(mref)


def resolve_defense(workspace, defense: DefenseConfig):
    """The reward-model artifact a defense needs (None without one); one clear line when it is not installed."""
    if defense.method != "rad":
        return None
    from ..rad import resolve_reward_model

    return resolve_reward_model(workspace, defense.reward_model)


def rad_factory(reward_art, lm_tokenizer, defense: DefenseConfig, device: str, max_new_tokens: int = 64):
    """A function attention_mask -> fresh RADLogitsProcessor (the reward model is loaded once)."""
    from ..rad import RADLogitsProcessor, load_reward_model

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
                      force: bool = False, reporter=NULL):
    """Sample, classify, and store an eval artifact. Returns (artifact, reused)."""
    from ..classifiers import load_classifier

    device, precision = runtime.resolve()
    prompts, prompt_identity = load_eval_prompts(prompts_ref, num_prompts)  # same subset for every model and seed
    reward_id = reward_art.id if reward_art is not None else None
    config = {"task": "toxicity", "model": mref.identity(), "prompts": prompt_identity, "generation": generation.to_dict(),
              "defense": defense.identity(reward_id), "classifier": classifier_spec.identity,
              "dtype": dtype_identity(precision)}
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
                 "samples": generation.samples}
        return _finish_scored(ctx, records, classifier, extra)

    return workspace.create("evals", config, parents, build, name=name, force=force, device=device)


def rescore_eval(workspace, source, classifier_spec, *, runtime: RuntimeConfig = RuntimeConfig(),
                 classifier_batch_size: int = 64, name: str | None = None, force: bool = False, reporter=NULL):
    """Re-score the continuations saved in eval `source` with another classifier (implicit toxicity)."""
    from ..classifiers import load_classifier

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
                 "source_classifier": src.get("classifier")}
        return _finish_scored(ctx, scored, classifier, extra)

    return workspace.create("evals", config, parents, build, name=name, force=force, device=device)


# ---- fluency -----------------------------------------------------------------------------------
def _load_texts(ref: str | None, **kwargs) -> tuple[list[str] | None, dict | None]:
    """(texts, identity with the document count) of a fluency data set; (None, None) when it is skipped."""
    if ref is None:
        return None, None
    from ..data import load_records, record_text

    records, ident = load_records(ref, **kwargs)
    texts = [record_text(r) for r in records]
    return texts, {**ident, "docs": len(texts)}


def _perplexity_step(ctx, model, tok, texts, config: FluencyConfig, data: FluencyData, device, reporter):
    with ctx.timed("perplexity"):
        ppl = perplexity(model, tok, texts, batch_size=config.batch_size, max_length=config.max_length, device=device,
                         reporter=reporter)
    summary = {"perplexity": ppl["perplexity"], "perplexity_tokens": ppl["tokens"], "perplexity_data": data.ppl_data}
    return summary, ppl


def _lambada_step(ctx, model, tok, texts, config: FluencyConfig, data: FluencyData, factory, device, reporter):
    with ctx.timed("lambada"):
        lam = lambada_accuracy(model, tok, texts, batch_size=config.batch_size, device=device, processor_factory=factory,
                               reporter=reporter)
    _write_jsonl(ctx.staging / LAMBADA_FILE, ({"text": t, "correct": ok} for t, ok in zip(texts, lam["correct"], strict=True)))
    summary = {"lambada_accuracy": lam["lambada_accuracy"], "lambada_examples": lam["lambada_examples"],
               "lambada_data": data.lambada}
    return summary, {k: v for k, v in lam.items() if k != "correct"}


def evaluate_fluency(workspace, mref, config: FluencyConfig = FluencyConfig(), *, defense: DefenseConfig = DefenseConfig(),
                     reward_art=None, runtime: RuntimeConfig = RuntimeConfig(), name: str | None = None, force: bool = False,
                     reporter=NULL):
    """Perplexity and LAMBADA accuracy; with RAD only LAMBADA (RAD changes decoding, not the model's likelihood)."""
    device, precision = runtime.resolve()
    data = fluency_data(mref, config, defense)
    ppl_texts, ppl_identity = _load_texts(data.ppl_data, split=data.ppl_split, limit=config.ppl_docs)
    lambada_texts, lambada_identity = _load_texts(data.lambada, limit=config.lambada_docs)
    reward_id = reward_art.id if reward_art is not None else None
    stage = {"task": "fluency", "model": mref.identity(), "perplexity_data": ppl_identity, "lambada_data": lambada_identity,
             "max_length": config.max_length, "defense": defense.identity(reward_id), "dtype": dtype_identity(precision)}
    parents = [*mref.parents, *([reward_id] if reward_id else [])]

    def build(ctx):
        if not is_main_process():
            return {}
        model, tok = load_lm(mref, device, precision)
        summary = {"task": "fluency", "model": mref.ref, "defense": defense.label(), "perplexity": None,
                   "lambada_accuracy": None}
        details: dict = {}
        if ppl_texts is not None:
            part, details["perplexity"] = _perplexity_step(ctx, model, tok, ppl_texts, config, data, device, reporter)
            summary.update(part)
        if lambada_texts is not None:
            factory = _defense_factory(reward_art, tok, defense, device)
            part, details["lambada"] = _lambada_step(ctx, model, tok, lambada_texts, config, data, factory, device, reporter)
            summary.update(part)
        (ctx.staging / METRICS).write_text(json.dumps({**summary, **details}, indent=2))
        return summary

    return workspace.create("evals", stage, parents, build, name=name, force=force, device=device)
