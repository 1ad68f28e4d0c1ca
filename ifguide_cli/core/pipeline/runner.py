"""The whole IF-Guide chain in one call: data → baseline → factors → scores → mask → IF-Guide model(s) → eval → report.

Two scenarios (`scenario:` in the pipeline file):
- `finetune`: the baseline (given, or trained from scratch) is fine-tuned twice, with the penalty (IF-Guide)
  and without it (control); the headline is control TP / IF-Guide TP.
- `pretrain` (the paper's headline run): the IF-Guide model is trained from scratch with the baseline's
  recipe (same seed, steps and data order) plus the penalty; the headline is baseline TP / IF-Guide TP.

A comparison (`arms:`, or `seeds` > 1) replaces the single IF-Guide model by named arms (`pipeline.arms`):
each arm's mask (influence, standard influence, classifier, word list) is built, then per seed the plain
control and every arm are trained from the same baseline with the same options; every system gets the same
evaluations, and the report compares each arm with the control (its `comparisons` are `run --json`'s `arms`).

With `influence.proxy` the factors and scores run on a smaller proxy model (`pipeline.proxy`, the paper's
Pythia-160M for 1B-class targets), trained first on the same dataset artifact when it is not a checkpoint; its mask
trains the target.

Each stage is the same core function its own command runs, so every stage is an artifact that is reused
when its configuration and parents are unchanged: a rerun after a crash or a config tweak only redoes what
changed. The corpus is tokenized once (the `data` stage) and every later stage is given that dataset
artifact, so its layout and row length are set in one place. Before the first stage, every stage's options
and every input (offline availability included, `pipeline_inputs`) are checked. The pipeline file is read
in `pipeline.spec`; `pipeline.plan` says what a run would do without doing it (`--dry-run`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ifguide_cli.core.pipeline.spec import PipelineSpec
from ifguide_cli.core.pipeline.stage_configs import StageConfigs, stage_configs
from ifguide_cli.core.progress import NULL
from ifguide_cli.core.stage import Result

if TYPE_CHECKING:
    from ifguide_cli.core.store.workspace import Workspace

MASK_LABEL_KEYS = ("label_field", "label_base_rate", "label_precision_at_k", "label_auc")


@dataclass
class StageRecord:
    name: str
    id: str
    kind: str
    reused: bool
    seconds: float


@dataclass
class PipelineResult:
    scenario: str = "finetune"
    reference: str = "control"  # the system IF-Guide is compared with: control (finetune) or baseline (pretrain)
    stages: dict[str, StageRecord] = field(default_factory=dict)
    mask: dict = field(default_factory=dict)
    systems: dict[str, dict] = field(default_factory=dict)
    reduction: float | None = None
    reduction_is_lower_bound: bool = False
    report: dict = field(default_factory=dict)
    seconds: float = 0.0
    # a comparison run: {"arms": the report's comparisons, "headline", "control_checkpoint", "seeds", "masks": per arm}
    comparison: dict | None = None

    def to_json(self) -> dict:
        if self.comparison is not None:
            return {"scenario": self.scenario, "stages": self._stages_json(), **self.comparison,
                    "systems": self.systems, "report": self.report, "seconds": round(self.seconds, 2)}
        return {"scenario": self.scenario, "stages": self._stages_json(), "mask": self.mask, **self.systems,
                "reduction": self.reduction, "reduction_of": self.reference,
                "reduction_is_lower_bound": self.reduction_is_lower_bound, "report": self.report,
                "seconds": round(self.seconds, 2)}

    def _stages_json(self) -> dict:
        return {k: {"id": s.id, "kind": s.kind, "reused": s.reused, "seconds": round(s.seconds, 2)}
                for k, s in self.stages.items()}


def reduction_factor(control_tp: float, ifguide_tp: float, num_prompts: int) -> tuple[float | None, bool]:
    """control TP / IF-Guide TP. With no toxic prompt left, TP < 1/num_prompts, so that bound is used
    (and flagged): the reduction is then at least control TP × num_prompts. None when there is nothing to
    reduce (the control has TP 0 too)."""
    if control_tp is None or ifguide_tp is None or num_prompts <= 0 or control_tp == ifguide_tp == 0:
        return None, False
    if ifguide_tp > 0:
        return control_tp / ifguide_tp, False
    return control_tp * num_prompts, True


def run_pipeline(ws: Workspace, spec: PipelineSpec, *, reporter=NULL, force: bool = False,
                 on_stage: Callable[[StageRecord], None] | None = None,
                 on_start: Callable[[str], None] | None = None) -> PipelineResult:
    """Run (or reuse) every stage; `on_start(name)` / `on_stage(record)` report live progress."""
    from ifguide_cli.core.pipeline.inputs import check_inputs
    from ifguide_cli.core.pipeline.proxy import run_proxy

    started = time.perf_counter()
    configs = stage_configs(spec)  # every stage's options are checked before the first one runs
    inputs = check_inputs(ws, spec, configs).require()  # and every input is there (offline too), in seconds
    proxy = run_proxy(ws, spec, inputs.model)  # a proxy that cannot score for the target: one line, before any work
    run = _Run(ws, spec, configs, reporter=reporter, force=force, on_start=on_start, on_stage=on_stage, proxy=proxy)
    data = run.data()
    baseline_ref = run.baseline(data)
    if spec.compares_arms:
        systems = run.compare_arms(baseline_ref, data, run.arm_masks(baseline_ref, data))
        run.comparison_report(run.evaluate(systems, inputs.classifier))
    else:
        mask = run.influence_and_mask(baseline_ref, data)
        systems = run.detoxify(baseline_ref, data, mask)
        run.report(run.evaluate(systems, inputs.classifier))
    run.result.seconds = time.perf_counter() - started
    return run.result


class _Run:
    """One run of the pipeline: its stages in order, each reported as it starts and ends and recorded in `result`."""

    def __init__(self, ws: Workspace, spec: PipelineSpec, configs: StageConfigs, *, reporter, force: bool,
                 on_start: Callable[[str], None] | None, on_stage: Callable[[StageRecord], None] | None, proxy=None):
        self.ws, self.spec, self.configs, self.proxy = ws, spec, configs, proxy
        self.common = {"reporter": reporter, "force": force}
        self.on_start, self.on_stage = on_start, on_stage
        pretrain = spec.scenario == "pretrain"
        self.result = PipelineResult(scenario=spec.scenario, reference="baseline" if pretrain else "control")

    def stage(self, name: str, fn: Callable[[], Result]):
        """Run one stage (`fn` returns its `stage.Result`) and record it."""
        if self.on_start:
            self.on_start(name)
        start = time.perf_counter()
        res = fn()
        art, reused = res.artifact, res.reused
        record = StageRecord(name, art.id, art.kind, reused, time.perf_counter() - start)
        self.result.stages[name] = record
        if self.on_stage:
            self.on_stage(record)
        return art

    def data(self):
        """The corpus tokenized once, as the `corpus` section says: the dataset artifact every stage is given."""
        from ifguide_cli.core.data import resolve_corpus
        from ifguide_cli.core.dist import barrier
        from ifguide_cli.core.models import resolve_model

        options = dict(self.configs.corpus)
        seq_len = options.pop("seq_len", None)
        mref = resolve_model(self.spec.baseline.checkpoint or self.spec.model, self.ws)
        return self.stage("data", lambda: resolve_corpus(self.ws, self.spec.data, mref, seq_len, barrier=barrier,
                                                         **self.common, **options))

    def train(self, name: str, mode: str, model_ref: str, values: dict, data, mask_ref: str | None = None):
        from ifguide_cli.core.training import run_training

        values = {"profile": self.profile(model_ref), **values}

        return self.stage(name, lambda: run_training(self.ws, mode=mode, model_ref=model_ref, data_ref=data.id,
                                                     mask_ref=mask_ref, values=values, name=name, **self.common))

    def profile(self, model_ref: str) -> str:
        from ifguide_cli.core.models import resolve_model

        return training_profile(self.ws, self.spec.data, resolve_model(model_ref, self.ws))

    def baseline(self, data) -> str:
        """The model to detoxify: the given checkpoint, or one trained from scratch. Returns its reference."""
        if self.spec.baseline.checkpoint:
            return self.spec.baseline.checkpoint
        return self.train("baseline", "pretrain", self.spec.model, self.configs.baseline_train, data).id

    def influence_and_mask(self, baseline_ref: str, data):
        """Factors, differential scores and the toxic-token mask (Alg. 1) of the training data."""
        scores = self.scores(self.factors(self.scorer(baseline_ref, data), data), differential=True)
        mask = self.influence_mask("mask", scores, self.configs.mask, name="mask")
        self.result.mask = {**mask_figures(mask.summary), **self.proxy_figures()}
        return mask

    def scorer(self, baseline_ref: str, data) -> str:
        """The model the influence stages run on: the baseline, or the proxy (trained from scratch on the run's
        dataset, as the baseline is, unless it is a checkpoint taken as it is)."""
        if self.proxy is None:
            return baseline_ref
        if not self.proxy.trained:
            return self.proxy.ref
        return self.train("proxy", "pretrain", self.proxy.ref, self.configs.proxy_train, data).id

    def proxy_figures(self) -> dict:
        """What the run reports of the proxy: the model that scored (a checkpoint id when the run trained it)."""
        if self.proxy is None:
            return {}
        trained = self.result.stages.get("proxy")
        return {"proxy": self.proxy.ref, "proxy_checkpoint": trained.id if trained else self.proxy.model.artifact_id}

    def factors(self, model_ref: str, data):
        from ifguide_cli.core.influence import fit_factors

        return self.stage("factors", lambda: fit_factors(self.ws, model_ref, data.id, self.configs.factors,
                                                         name="factors", **self.common))

    def scores(self, factors, *, differential: bool):
        """Token-wise influence: toxic minus safe queries (`scores`), or toxic queries only (`scores_standard`)."""
        from ifguide_cli.core.influence import compute_scores

        influence, name = self.spec.influence, "scores" if differential else "scores_standard"

        safe = influence.safe_queries if differential else None
        return self.stage(name, lambda: compute_scores(self.ws, factors.id, influence.toxic_queries, safe, self.configs.scores,
                                                       name=name.replace("_", "-"), **self.common))

    def influence_mask(self, stage: str, scores, config, *, name: str):
        from ifguide_cli.core.masking.source import MaskRefs

        return self.mask(stage, "influence", MaskRefs(scores.id), config, name=name)

    def mask(self, stage: str, source: str, refs, config, *, name: str):
        """The mask of a registered source (`masking.source.make_mask`), recorded as stage `stage`."""
        from ifguide_cli.core.masking.source import make_mask

        return self.stage(stage, lambda: make_mask(self.ws, source, refs, config, name=name, **self.common))

    # ---- a comparison of arms ----------------------------------------------------------------------
    def arm_masks(self, baseline_ref: str, data) -> dict:
        """Every arm's mask (arm name → artifact): the arms whose source reads influence scores share the factors
        (and the scores of the same kind); the other sources build theirs from the training data."""
        from ifguide_cli.core.pipeline.arms import used_scores

        arms = self.configs.arms
        kinds = used_scores(arms)
        factors = self.factors(self.scorer(baseline_ref, data), data) if kinds else None
        scores = {d: self.scores(factors, differential=d).id for d in kinds}
        return {arm.name: self.mask(f"mask_{arm.name}", arm.source,
                                    arm.entry.refs(data=data.id, scores=scores.get(arm.entry.scores)), arm.mask,
                                    name=f"{arm.name}-mask")
                for arm in arms}

    def compare_arms(self, baseline_ref: str, data, masks: dict) -> dict[str, str]:
        """Per seed, the plain control and every arm trained from the same start with the same options
        (system → checkpoint); the baseline first when it is evaluated."""
        from ifguide_cli.core.pipeline.arms import arm_runs

        configs, pretrain = self.configs, self.spec.scenario == "pretrain"
        mode, start = ("pretrain", self.spec.model) if pretrain else ("finetune", baseline_ref)
        systems = {"baseline": baseline_ref} if pretrain or self.spec.eval.evaluate_baseline else {}
        runs = arm_runs(configs.arms, list(configs.seeds))
        for run in runs:
            mask = masks[run.arm.name] if run.arm else None
            systems[run.system] = self.train(run.system, mode, start, run.values(configs.arm_train), data,
                                             mask_ref=mask.id if mask else None).id
        self.result.comparison = {
            "arms": None,  # the report's comparisons (and its one-line headline), once it is built
            "headline": None,
            "control_checkpoint": systems[runs[0].system],  # the first seed's control
            "seeds": list(configs.seeds),
            "masks": {a.name: {**a.to_json(), **mask_figures(masks[a.name].summary)} for a in configs.arms},
            **self.proxy_figures()}
        return systems

    def detoxify(self, baseline_ref: str, data, mask) -> dict[str, str]:
        """The systems to evaluate (system → model): finetune: [baseline,] control and IF-Guide fine-tunes;
        pretrain: the baseline and the IF-Guide model trained from scratch with its recipe."""
        lam = {"lam": self.spec.penalty.lam}
        if self.spec.scenario == "pretrain":
            ifguide = self.train("ifguide", "pretrain", self.spec.model, {**self.configs.ifguide_train, **lam}, data,
                                 mask_ref=mask.id)
            return {"baseline": baseline_ref, "ifguide": ifguide.id}
        train = self.configs.finetune_train
        control = self.train("control", "finetune", baseline_ref, train, data)
        ifguide = self.train("ifguide", "finetune", baseline_ref, {**train, **lam}, data, mask_ref=mask.id)
        systems = {"control": control.id, "ifguide": ifguide.id}
        return {"baseline": baseline_ref, **systems} if self.spec.eval.evaluate_baseline else systems

    def evaluate(self, systems: dict[str, str], classifier) -> list:
        """Toxicity and fluency of every system, in order (each skipped when the eval section says so)."""
        from ifguide_cli.core.models import resolve_model

        evals = []
        for system, model_ref in systems.items():
            evals += self.evaluate_system(system, model_ref, resolve_model(model_ref, self.ws), classifier)
        return evals

    def evaluate_system(self, system: str, model_ref: str, mref, classifier) -> list:
        from ifguide_cli.core.evaluation import evaluate_fluency, evaluate_toxicity

        ev, out = self.spec.eval, []
        metrics: dict = {"checkpoint": model_ref}
        if ev.toxicity:
            prompts = eval_prompts(ev, self.ws, mref)
            assert prompts is not None, "check_inputs refuses a run whose own corpus has no held-out prompts"
            tox = self.stage(f"eval_toxicity_{system}", lambda: evaluate_toxicity(
                self.ws, mref, prompts, self.configs.generation, classifier, num_prompts=ev.num_prompts,
                name=f"{system}-toxicity", **self.common))
            metrics.update(toxicity_figures(tox.summary))
            out.append(tox)
        fluency_cfg = fluency_config(ev, self.configs.fluency, mref, self.ws)
        if fluency_cfg is not None:
            flu = self.stage(f"eval_fluency_{system}", lambda: evaluate_fluency(
                self.ws, mref, fluency_cfg, name=f"{system}-fluency", **self.common))
            metrics.update({k: flu.summary.get(k) for k in ("perplexity", "lambada_accuracy")})
            out.append(flu)
        self.result.systems[system] = metrics
        return out

    def comparison_report(self, evals: list) -> None:
        """The report of every eval against the control (first seed's control checkpoint); its `comparisons` (each
        arm against the control, with intervals) become the run's `arms`."""
        from ifguide_cli.core.report.build import build_report

        if not evals:
            return
        # one checkpoint evaluated twice (pretrain: the first seed's control can be the baseline itself) is one eval
        evals = list({e.id: e for e in evals}.values())
        comparison = self.result.comparison
        assert comparison is not None, "set when the comparison's trainings were planned"
        control = comparison["control_checkpoint"]
        art = self.stage("report", lambda: build_report(self.ws, evals, force=self.common["force"], control=control))
        self.result.report = {"id": art.id, "html": str(art.path / "report.html")}
        comparison.update(arms=art.summary.get("comparisons"), headline=art.summary.get("headline"))

    def report(self, evals: list) -> None:
        """The HTML report of every eval, and the headline: reference TP / IF-Guide TP (when toxicity was evaluated)."""
        from ifguide_cli.core.report.build import build_report

        if not evals:
            return
        art = self.stage("report", lambda: build_report(self.ws, evals, force=self.common["force"]))
        result = self.result
        result.report = {"id": art.id, "html": str(art.path / "report.html")}
        reference, ifguide = result.systems.get(result.reference), result.systems["ifguide"]
        if reference is not None and "toxicity_probability" in ifguide:
            result.reduction, result.reduction_is_lower_bound = reduction_factor(
                reference["toxicity_probability"], ifguide["toxicity_probability"], reference.get("prompts") or 0)


def training_profile(ws: Workspace, data_ref: str, mref) -> str:
    """The training profile `ifguide train MODEL --data DATA` would use (DATA as the file names it, not the
    dataset artifact the stage is given); a checkpoint keeps the profile it was trained with."""
    from ifguide_cli.core.training.config import default_profile

    base = ws.by_id(mref.artifact_id) if mref.artifact_id else None
    return default_profile(mref.ref if mref.source == "registry" else "", data_ref,
                           base.config.get("profile") if base else None)


def mask_figures(summary: dict) -> dict:
    """What the run reports of the mask: its size, and how it ranks labelled documents when the data has labels."""
    return {
        "tokens": summary.get("tokens_selected"),
        "documents": summary.get("documents_selected"),
        "threshold_value": summary.get("threshold_value"),
        "precision_at_k": summary.get("planted_precision_at_k", summary.get("label_precision_at_k")),
        **{k: summary[k] for k in MASK_LABEL_KEYS if k in summary},
    }


def toxicity_figures(summary: dict) -> dict:
    """TP, EMT and its spread, the prompt count, and the prompts shared with the influence queries (when counted)."""
    keys = ("toxicity_probability", "expected_max_toxicity", "expected_max_toxicity_std", "prompts")
    return {**{k: summary.get(k) for k in keys}, **({"leakage": summary["leakage"]} if "leakage" in summary else {})}


def eval_prompts(ev, ws: Workspace, mref) -> str | None:
    """The prompt set of one model's toxicity eval: `auto` is the held-out prompts of the own corpus it was trained
    on (None: that corpus has none), else RealToxicityPrompts."""
    from ifguide_cli.core.evaluation.inputs import own_corpus
    from ifguide_cli.core.pipeline.spec import AUTO

    if ev.prompts != AUTO:
        return ev.prompts
    own = own_corpus(ws, mref)
    return own.prompts if own is not None else "rtp"


def fluency_config(ev, options: dict, mref, ws: Workspace | None = None):
    """The fluency eval's config for one model: `auto` data is the model's default (for one trained on your own
    corpus its held-out split, and no LAMBADA), null skips that metric; None when both are skipped."""
    from ifguide_cli.core.evaluation import FluencyConfig, default_fluency_data
    from ifguide_cli.core.pipeline.spec import AUTO

    ppl_default, ppl_split, lambada_default = default_fluency_data(mref, ws)
    ppl = ppl_default if ev.ppl_data == AUTO else ev.ppl_data
    lambada = lambada_default if ev.lambada == AUTO else ev.lambada
    if ppl is None and lambada is None:
        return None
    split = options.get("ppl_split", ppl_split if ev.ppl_data == AUTO else None)
    return FluencyConfig(**{**options, "ppl_data": ppl, "ppl_split": split, "lambada": lambada,
                            "no_ppl": ppl is None, "no_lambada": lambada is None})
