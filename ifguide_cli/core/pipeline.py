"""The whole IF-Guide chain in one call: baseline → factors → scores → mask → fine-tune (IF-Guide and control) → eval → report.

Each stage is the same core function its own command runs, so every stage is an artifact
that is reused when its configuration and parents are unchanged: a rerun after a crash or
a config tweak only redoes what changed. The pipeline file itself is read in `pipeline_spec`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .pipeline_spec import PipelineSpec, StageConfigs, stage_configs
from .progress import NULL


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
    seconds: float = 0.0

    def to_json(self) -> dict:
        out = {"stages": {k: {"id": s.id, "kind": s.kind, "reused": s.reused, "seconds": round(s.seconds, 2)}
                          for k, s in self.stages.items()},
               "mask": self.mask, **self.systems, "reduction": self.reduction,
               "reduction_is_lower_bound": self.reduction_is_lower_bound, "report": self.report,
               "seconds": round(self.seconds, 2)}
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

    started = time.perf_counter()
    configs = stage_configs(spec)  # every stage's options are checked before the first one runs
    classifier = resolve_classifier(spec.eval.classifier, ws)  # fail before hours of work
    run = _Run(ws, spec, configs, reporter=reporter, force=force, on_start=on_start, on_stage=on_stage)
    baseline_ref, base_mref = run.baseline()
    mask = run.influence_and_mask(baseline_ref)
    systems = run.finetunes(baseline_ref, mask)
    evals = run.evaluate(systems, base_mref, classifier)
    run.report(evals)
    run.result.seconds = time.perf_counter() - started
    return run.result


class _Run:
    """One run of the pipeline: its stages in order, each reported as it starts and ends and recorded in `result`."""

    def __init__(self, ws, spec: PipelineSpec, configs: StageConfigs, *, reporter, force: bool,
                 on_start: Callable[[str], None] | None, on_stage: Callable[[StageRecord], None] | None):
        self.ws, self.spec, self.configs = ws, spec, configs
        self.common = {"reporter": reporter, "force": force}
        self.on_start, self.on_stage = on_start, on_stage
        self.result = PipelineResult()

    def stage(self, name: str, fn: Callable[[], tuple[Any, bool]]):
        """Run one stage (`fn` returns (artifact, reused)) and record it."""
        if self.on_start:
            self.on_start(name)
        start = time.perf_counter()
        art, reused = fn()
        record = StageRecord(name, art.id, art.kind, reused, time.perf_counter() - start)
        self.result.stages[name] = record
        if self.on_stage:
            self.on_stage(record)
        return art

    def train(self, name: str, mode: str, model_ref: str, values: dict, mask_ref: str | None = None):
        from .training import run_training

        def fn():
            res = run_training(self.ws, mode=mode, model_ref=model_ref, data_ref=self.spec.data, mask_ref=mask_ref,
                               values=values, name=name, **self.common)
            return res.artifact, res.reused

        return self.stage(name, fn)

    def baseline(self):
        """The model to detoxify: the given checkpoint, or one trained from scratch. Returns (reference, ModelRef)."""
        from .models import resolve_model

        if self.spec.baseline.checkpoint:
            ref = self.spec.baseline.checkpoint
        else:
            ref = self.train("baseline", "pretrain", self.spec.model, self.configs.baseline_train).id
        return ref, resolve_model(ref, self.ws)

    def influence_and_mask(self, baseline_ref: str):
        """Factors, differential scores and the toxic-token mask (Alg. 1) of the training data."""
        from .influence import compute_scores, fit_factors
        from .masking import create_mask_artifact

        spec, configs = self.spec, self.configs

        def factors_fn():
            res = fit_factors(self.ws, baseline_ref, spec.data, configs.factors, name="factors", **self.common)
            return res.artifact, res.reused

        factors = self.stage("factors", factors_fn)

        def scores_fn():
            res = compute_scores(self.ws, factors.id, spec.influence.toxic_queries, spec.influence.safe_queries,
                                 configs.scores, name="scores", **self.common)
            return res.artifact, res.reused

        scores = self.stage("scores", scores_fn)
        mask = self.stage("mask", lambda: create_mask_artifact(self.ws, scores.id, configs.mask, name="mask", **self.common))
        self.result.mask = {
            "tokens": mask.summary.get("tokens_selected"),
            "documents": mask.summary.get("documents_selected"),
            "threshold_value": mask.summary.get("threshold_value"),
            "precision_at_k": mask.summary.get("planted_precision_at_k"),
        }
        return mask

    def finetunes(self, baseline_ref: str, mask) -> dict[str, str]:
        """The plain control fine-tune and the IF-Guide one (same options, plus the mask and λ). Returns system → model."""
        train = self.configs.finetune_train
        control = self.train("control", "finetune", baseline_ref, train)
        ifguide = self.train("ifguide", "finetune", baseline_ref, {**train, "lam": self.spec.finetune.lam}, mask_ref=mask.id)
        systems = {"control": control.id, "ifguide": ifguide.id}
        if self.spec.eval.evaluate_baseline:
            systems = {"baseline": baseline_ref, **systems}
        return systems

    def evaluate(self, systems: dict[str, str], base_mref, classifier) -> list:
        """Toxicity and fluency of every system, in order. Returns the eval artifacts."""
        from .models import resolve_model

        evals = []
        for system, model_ref in systems.items():
            mref = base_mref if system == "baseline" else resolve_model(model_ref, self.ws)
            evals += self.evaluate_system(system, model_ref, mref, classifier)
        return evals

    def evaluate_system(self, system: str, model_ref: str, mref, classifier) -> list:
        from .evaluation import FluencyConfig, default_fluency_data, evaluate_fluency, evaluate_toxicity

        ev = self.spec.eval
        ppl_default, ppl_split, lambada_default = default_fluency_data(mref)
        fluency_cfg = FluencyConfig(ppl_data=ev.ppl_data or ppl_default, ppl_split=None if ev.ppl_data else ppl_split,
                                    lambada=ev.lambada or lambada_default)
        tox = self.stage(f"eval_toxicity_{system}", lambda: evaluate_toxicity(
            self.ws, mref, ev.prompts, self.configs.generation, classifier, num_prompts=ev.num_prompts,
            name=f"{system}-toxicity", **self.common))
        flu = self.stage(f"eval_fluency_{system}", lambda: evaluate_fluency(
            self.ws, mref, fluency_cfg, name=f"{system}-fluency", **self.common))
        self.result.systems[system] = {
            "checkpoint": model_ref,
            "toxicity_probability": tox.summary.get("toxicity_probability"),
            "expected_max_toxicity": tox.summary.get("expected_max_toxicity"),
            "expected_max_toxicity_std": tox.summary.get("expected_max_toxicity_std"),
            "perplexity": flu.summary.get("perplexity"),
            "lambada_accuracy": flu.summary.get("lambada_accuracy"),
            "prompts": tox.summary.get("prompts"),
        }
        return [tox, flu]

    def report(self, evals: list) -> None:
        """The HTML report of every eval, and the headline: control TP / IF-Guide TP."""
        from .report import build_report

        art = self.stage("report", lambda: build_report(self.ws, evals, force=self.common["force"])[:2])
        result = self.result
        result.report = {"id": art.id, "html": str(art.path / "report.html")}
        control, ifguide = result.systems["control"], result.systems["ifguide"]
        result.reduction, result.reduction_is_lower_bound = reduction_factor(
            control["toxicity_probability"], ifguide["toxicity_probability"], control.get("prompts") or 0)
