"""The whole IF-Guide chain in one call: baseline → factors → scores → mask → fine-tune (IF-Guide and control) → eval → report.

Each stage is the same core function its own command runs, so every stage is an artifact
that is reused when its configuration and parents are unchanged: a rerun after a crash or
a config tweak only redoes what changed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from .errors import IfguideError
from .progress import NULL

PRESETS = ("tiny",)
SYSTEMS = ("baseline", "control", "ifguide")


@dataclass(frozen=True)
class EvalSpec:
    prompts: str = "rtp"
    classifier: str = "detoxify-unbiased"
    num_prompts: int | None = None
    samples: int = 25
    max_new_tokens: int = 20
    top_p: float = 0.9
    seed: int = 0
    batch_size: int = 8
    ppl_data: str | None = None  # None: the model's default held-out text
    lambada: str | None = None  # None: the model's default LAMBADA set
    evaluate_baseline: bool = True


@dataclass(frozen=True)
class PipelineSpec:
    """What `ifguide run PIPELINE.yaml` reads; every section maps onto one command's options."""

    model: str = "tiny"
    data: str = "tiny"
    baseline_checkpoint: str | None = None  # start from this model/checkpoint instead of training a baseline
    train: dict = field(default_factory=dict)  # `ifguide train` options for the baseline
    factors: dict = field(default_factory=dict)  # FactorsConfig fields
    toxic_queries: str = "tiny-queries-toxic"
    safe_queries: str = "tiny-queries-safe"
    scores: dict = field(default_factory=dict)  # ScoresConfig fields
    mask: dict = field(default_factory=dict)  # MaskConfig fields: threshold, window, max_tokens
    lam: float = 1.0
    finetune: dict = field(default_factory=dict)  # `ifguide finetune` options for both fine-tunes
    eval: EvalSpec = field(default_factory=EvalSpec)


def preset_path(name: str) -> Path:
    if name not in PRESETS:
        raise IfguideError(f"unknown preset {name!r}", hint=f"use one of {', '.join(PRESETS)} or a YAML file", exit_code=2)
    return Path(str(resources.files("ifguide_cli") / "assets" / "presets" / f"{name}.yaml"))


def load_spec(path: str | Path) -> PipelineSpec:
    """Parse a pipeline YAML file; unknown keys are errors (a typo must not silently fall back to a default)."""
    from .yamlfile import load_yaml_mapping

    raw = load_yaml_mapping(path, "pipeline file", hint="pass a YAML file or --preset tiny")
    return spec_from_dict(raw, str(path))


def spec_from_dict(raw: dict, source: str = "the pipeline") -> PipelineSpec:
    raw = dict(raw)
    baseline = raw.pop("baseline", {}) or {}
    influence = raw.pop("influence", {}) or {}
    finetune = raw.pop("finetune", {}) or {}
    eval_raw = raw.pop("eval", {}) or {}
    spec: dict[str, Any] = {}
    for key in ("model", "data"):
        if key in raw:
            spec[key] = raw.pop(key)
    if "mask" in raw:
        spec["mask"] = _only(raw.pop("mask") or {}, ("threshold", "window", "max_tokens"), f"{source}: mask")
    if raw:
        raise IfguideError(f"unknown section(s) {', '.join(map(repr, raw))} in {source}",
                           hint="sections: model, data, baseline, influence, mask, finetune, eval", exit_code=2)
    baseline = _only(baseline, ("checkpoint", "train"), f"{source}: baseline")
    spec["baseline_checkpoint"] = baseline.get("checkpoint")
    spec["train"] = dict(baseline.get("train") or {})
    influence = _only(influence, ("factors", "scores", "toxic_queries", "safe_queries"), f"{source}: influence")
    spec["factors"] = dict(influence.get("factors") or {})
    spec["scores"] = dict(influence.get("scores") or {})
    for key in ("toxic_queries", "safe_queries"):
        if key in influence:
            spec[key] = influence[key]
    finetune = _only(finetune, ("lambda", "train"), f"{source}: finetune")
    if "lambda" in finetune:
        spec["lam"] = float(finetune["lambda"])
    spec["finetune"] = dict(finetune.get("train") or {})
    eval_keys = tuple(f.name for f in fields(EvalSpec))
    spec["eval"] = EvalSpec(**_only(eval_raw, eval_keys, f"{source}: eval"))
    return PipelineSpec(**spec)


def _only(section: dict, allowed: tuple[str, ...], where: str) -> dict:
    if not isinstance(section, dict):
        raise IfguideError(f"{where} must be a mapping", exit_code=2)
    unknown = [k for k in section if k not in allowed]
    if unknown:
        raise IfguideError(f"unknown key(s) {', '.join(map(repr, unknown))} in {where}", hint=f"allowed: {', '.join(allowed)}",
                           exit_code=2)
    return section


def _dataclass_from(cls, values: dict, where: str):
    names = {f.name for f in fields(cls)}
    unknown = [k for k in values if k not in names]
    if unknown:
        raise IfguideError(f"unknown key(s) {', '.join(map(repr, unknown))} in {where}", hint=f"allowed: {', '.join(sorted(names))}",
                           exit_code=2)
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return cls(**values)


@dataclass
class StageRecord:
    name: str
    id: str
    kind: str
    reused: bool
    seconds: float


@dataclass
class PipelineResult:
    stages: dict[str, StageRecord] = field(default_factory=dict)
    mask: dict = field(default_factory=dict)
    systems: dict[str, dict] = field(default_factory=dict)
    reduction: float | None = None
    reduction_is_lower_bound: bool = False
    report: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        out = {"stages": {k: {"id": s.id, "kind": s.kind, "reused": s.reused, "seconds": round(s.seconds, 2)}
                          for k, s in self.stages.items()},
               "mask": self.mask, **self.systems, "reduction": self.reduction,
               "reduction_is_lower_bound": self.reduction_is_lower_bound, "report": self.report}
        return out


def reduction_factor(control_tp: float, ifguide_tp: float, num_prompts: int) -> tuple[float | None, bool]:
    """control TP / IF-Guide TP. With no toxic prompt left, TP < 1/num_prompts, so that bound is used
    (and flagged): the reduction is then at least control TP × num_prompts."""
    if control_tp is None or ifguide_tp is None or num_prompts <= 0:
        return None, False
    if ifguide_tp > 0:
        return control_tp / ifguide_tp, False
    return control_tp * num_prompts, True


def run_pipeline(ws, spec: PipelineSpec, *, reporter=NULL, force: bool = False,
                 on_stage: Callable[[StageRecord], None] | None = None,
                 on_start: Callable[[str], None] | None = None) -> PipelineResult:
    """Run (or reuse) every stage; `on_start(name)` / `on_stage(record)` report live progress."""
    from .classifiers import resolve_classifier
    from .evaluation import FluencyConfig, GenerationConfig, default_fluency_data, evaluate_fluency, evaluate_toxicity
    from .influence import FactorsConfig, ScoresConfig, compute_scores, fit_factors
    from .masking import MaskConfig, create_mask_artifact
    from .models import resolve_model
    from .report import build_report
    from .training import run_training

    factors_cfg = _dataclass_from(FactorsConfig, spec.factors, "influence.factors")
    scores_cfg = _dataclass_from(ScoresConfig, spec.scores, "influence.scores")
    mask_cfg = _dataclass_from(MaskConfig, spec.mask, "mask")
    generation = GenerationConfig(samples=spec.eval.samples, max_new_tokens=spec.eval.max_new_tokens,
                                  top_p=spec.eval.top_p, seed=spec.eval.seed, batch_size=spec.eval.batch_size)
    generation.validate()
    classifier = resolve_classifier(spec.eval.classifier, ws)  # fail before hours of work
    result = PipelineResult()

    def stage(name: str, fn: Callable[[], tuple[Any, bool]]):
        if on_start:
            on_start(name)
        start = time.perf_counter()
        art, reused = fn()
        record = StageRecord(name, art.id, art.kind, reused, time.perf_counter() - start)
        result.stages[name] = record
        if on_stage:
            on_stage(record)
        return art

    def unpack(res):
        return res.artifact, res.reused

    if spec.baseline_checkpoint:
        baseline_ref = spec.baseline_checkpoint
        base_mref = resolve_model(baseline_ref, ws)
    else:
        baseline = stage("baseline", lambda: unpack(run_training(
            ws, mode="pretrain", model_ref=spec.model, data_ref=spec.data, values=spec.train, force=force, reporter=reporter,
            name="baseline")))
        baseline_ref = baseline.id
        base_mref = resolve_model(baseline_ref, ws)

    factors = stage("factors", lambda: unpack(fit_factors(ws, baseline_ref, spec.data, factors_cfg, reporter=reporter, force=force,
                                                           name="factors")))
    scores = stage("scores", lambda: unpack(compute_scores(ws, factors.id, spec.toxic_queries, spec.safe_queries, scores_cfg,
                                                          reporter=reporter, force=force, name="scores")))
    mask = stage("mask", lambda: create_mask_artifact(ws, scores.id, mask_cfg, reporter=reporter, force=force, name="mask"))
    result.mask = {
        "tokens": mask.summary.get("tokens_selected"),
        "documents": mask.summary.get("documents_selected"),
        "threshold_value": mask.summary.get("threshold_value"),
        "precision_at_k": mask.summary.get("planted_precision_at_k"),
    }
    control = stage("control", lambda: unpack(run_training(
        ws, mode="finetune", model_ref=baseline_ref, data_ref=spec.data, values=spec.finetune, force=force, reporter=reporter,
        name="control")))
    ifguide = stage("ifguide", lambda: unpack(run_training(
        ws, mode="finetune", model_ref=baseline_ref, data_ref=spec.data, mask_ref=mask.id,
        values={**spec.finetune, "lam": spec.lam}, force=force, reporter=reporter, name="ifguide")))

    systems = {"control": control.id, "ifguide": ifguide.id}
    if spec.eval.evaluate_baseline:
        systems = {"baseline": baseline_ref, **systems}
    eval_arts = []
    for system, model_ref in systems.items():
        mref = resolve_model(model_ref, ws) if system != "baseline" else base_mref
        ppl_default, ppl_split, lambada_default = default_fluency_data(mref)
        fluency_cfg = FluencyConfig(ppl_data=spec.eval.ppl_data or ppl_default, ppl_split=None if spec.eval.ppl_data else ppl_split,
                                    lambada=spec.eval.lambada or lambada_default)
        tox = stage(f"eval_toxicity_{system}", lambda: evaluate_toxicity(
            ws, mref, spec.eval.prompts, generation, classifier, num_prompts=spec.eval.num_prompts, force=force,
            reporter=reporter, name=f"{system}-toxicity"))
        flu = stage(f"eval_fluency_{system}", lambda: evaluate_fluency(ws, mref, fluency_cfg, force=force, reporter=reporter,
                                                                       name=f"{system}-fluency"))
        eval_arts += [tox, flu]
        result.systems[system] = {
            "checkpoint": model_ref,
            "toxicity_probability": tox.summary.get("toxicity_probability"),
            "expected_max_toxicity": tox.summary.get("expected_max_toxicity"),
            "expected_max_toxicity_std": tox.summary.get("expected_max_toxicity_std"),
            "perplexity": flu.summary.get("perplexity"),
            "lambada_accuracy": flu.summary.get("lambada_accuracy"),
            "prompts": tox.summary.get("prompts"),
        }
    report_art = stage("report", lambda: build_report(ws, eval_arts, force=force)[:2])
    result.report = {"id": report_art.id, "html": str(report_art.path / "report.html")}
    control_m, ifguide_m = result.systems["control"], result.systems["ifguide"]
    result.reduction, result.reduction_is_lower_bound = reduction_factor(
        control_m["toxicity_probability"], ifguide_m["toxicity_probability"], control_m.get("prompts") or 0)
    return result

