"""What `ifguide run` would do, without doing it (`--dry-run`): stages, what each would reuse, inputs, cost.

Nothing is built or written. A stage is matched against the workspace by its own key (`Stage.inputs` then
`Stage.key`, as `run_stage` finds a stored artifact): where every parent is stored, the stage resolves its
inputs (the influence stages load the model, whose weight fingerprint is in their key) and its key says whether
it would be reused. A stage whose parent would be new is new too (its id contains the parent's). The estimate
(tokens per stage, GPU-hours on an H100, disk, GPU memory) is `pipeline.estimate`'s, from the run's own sizes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ifguide_cli.core.pipeline.estimate import run_estimate, train_steps
from ifguide_cli.core.pipeline.inputs import Inputs, check_inputs
from ifguide_cli.core.pipeline.proxy import run_proxy
from ifguide_cli.core.pipeline.reading import PipelineFile
from ifguide_cli.core.pipeline.spec import PipelineSpec
from ifguide_cli.core.pipeline.stage_configs import StageConfigs, stage_configs

if TYPE_CHECKING:
    from ifguide_cli.core.store.workspace import Workspace


@dataclass(frozen=True)
class PlannedStage:
    name: str
    kind: str
    does: str  # what the stage would do, in words
    reuse: str | None  # the stored artifact it would reuse; None: it would be built

    def to_json(self) -> dict:
        return {"name": self.name, "kind": self.kind, "does": self.does, "reuse": self.reuse,
                "status": "reuse" if self.reuse else "new"}


@dataclass
class RunPlan:
    pipeline: PipelineFile
    inputs: Inputs
    stages: list[PlannedStage] = field(default_factory=list)
    estimate: Any = None  # paper.plan.Plan, or None when the sizes are not known
    memory: dict[str, dict[str, int]] | None = None  # peak GPU memory per stage (paper.memory), with the estimate
    estimate_note: str | None = None  # why there is no estimate, when the user can change it
    arms: tuple = ()  # a comparison run: pipeline.arms.ArmConfig of every arm
    seeds: tuple[int, ...] = ()

    def to_json(self) -> dict:
        spec = self.pipeline.spec
        arms = {"arms": [a.to_json() for a in self.arms], "seeds": list(self.seeds)} if self.arms else {}
        return {"dry_run": True, "pipeline": str(self.pipeline.path), "overrides": list(self.pipeline.overrides),
                "scenario": spec.scenario, **arms, "ready": not self.inputs.missing,
                "inputs": [i.to_json() for i in self.inputs.items], "missing": [i.role for i in self.inputs.missing],
                "stages": [s.to_json() for s in self.stages],
                "estimate": self.estimate.to_json() if self.estimate is not None else None, "memory": self.memory,
                "estimate_note": self.estimate_note}


def plan_run(ws: Workspace, pipeline: PipelineFile, gpus: int = 1) -> RunPlan:
    """The plan of a pipeline: its inputs (none required to be there), its stages and their reuse, its cost."""
    configs = stage_configs(pipeline.spec, str(pipeline.path))
    inputs = check_inputs(ws, pipeline.spec, configs)
    plan = RunPlan(pipeline, inputs, arms=configs.arms, seeds=configs.seeds)
    proxy = run_proxy(ws, pipeline.spec, inputs.model)
    plan.stages = _Planner(ws, pipeline.spec, configs, inputs, proxy).stages()
    cost = run_estimate(ws, pipeline.spec, configs, proxy, gpus, label=pipeline.path.stem)
    plan.estimate, plan.memory, plan.estimate_note = cost.plan, cost.memory, cost.note
    return plan


# ---- matching stored artifacts -------------------------------------------------------------------------
def reused(ws: Workspace, stage, refs, config_of: Callable[[Any], Any]):
    """The stored artifact `run_stage` would reuse for this stage and refs: the stage resolves its inputs and gives
    its key (nothing is built); `config_of(inputs)` is the stage's settings. None when there is none, or when the
    inputs cannot be resolved now (the inputs list says why)."""
    from ifguide_cli.core.stage import stored

    def lookup():
        inputs = stage.inputs(ws, refs)
        return stored(ws, stage.key(inputs, config_of(inputs)))

    return _unless_unresolvable(lookup)


def _unless_unresolvable(find: Callable[[], Any]):
    """`find()`, or None when it stops at an input that cannot be resolved now (an `IfguideError`)."""
    from ifguide_cli.core.errors import IfguideError

    try:
        return find()
    except IfguideError:
        return None


class _Planner:
    """The stages of `pipeline._Run`, in the same order, each matched against the workspace."""

    def __init__(self, ws: Workspace, spec: PipelineSpec, configs: StageConfigs, inputs: Inputs, proxy=None):
        self.ws, self.spec, self.configs, self.inputs, self.proxy = ws, spec, configs, inputs, proxy
        self.planned: list[PlannedStage] = []
        self.systems: dict[str, Any] = {}  # the systems evaluated (system → ModelRef, None: it would be trained)

    def add(self, name: str, kind: str, does: str, art):
        self.planned.append(PlannedStage(name, kind, does, art.id if art is not None else None))
        return art

    def stages(self) -> list[PlannedStage]:
        spec = self.spec
        data = self.add("data", "datasets", f"{_data_verb(spec.data)} {spec.data}", self.dataset())
        if spec.baseline.checkpoint:
            base = self.inputs.model
        else:
            base = self.model(self.add("baseline", "checkpoints",
                                       self.sized(f"train {spec.model} from scratch", "pretrain", self.configs.baseline_train, data),
                                       self.trained("pretrain", spec.model, self.configs.baseline_train, data)))
        if spec.compares_arms:
            self.comparison_report(self.evaluated(self.compare_arms(base, data, self.arm_masks(base, data))))
        else:
            self.evaluate(self.detoxify(base, data, self.influence(base, data)))
        return self.planned

    def model(self, art):
        """The ModelRef of a checkpoint that would be reused (None: it would be trained)."""
        from ifguide_cli.core.models import resolve_model

        return resolve_model(art.id, self.ws) if art is not None else None

    def dataset(self):
        """The dataset `pipeline._Run.data` would reuse: the artifact DATA names, else the data stage's key, stored."""
        from ifguide_cli.core.data import is_source_ref, resolve_corpus

        options, mref = dict(self.configs.corpus), self.inputs.model
        if not is_source_ref(self.spec.data):
            return _resolve_or_none(self.ws, self.spec.data)
        if mref is None:
            return None
        seq_len = options.pop("seq_len", None)
        found = _unless_unresolvable(lambda: resolve_corpus(self.ws, self.spec.data, mref, seq_len, lookup=True, **options))
        return found.artifact if found is not None else None

    def sized(self, does: str, mode: str, values: dict, data) -> str:
        """A training stage's words with how much it reads: steps × rows × tokens, and the passes over its corpus's
        training rows when the dataset is stored (a run's length is in rows: see `training.config.run_size`)."""
        from ifguide_cli.core.data import default_corpus_config
        from ifguide_cli.core.data.sources import is_packaged
        from ifguide_cli.core.errors import IfguideError
        from ifguide_cli.core.training.config import default_profile, given_values, resolve_config, run_size, split_rows
        from ifguide_cli.core.training.stage import packaged_dataset

        try:
            seq_len = data.config.get("seq_len") if data is not None else \
                default_corpus_config(self.spec.data, **self.configs.corpus).seq_len
            values = given_values(values, "the training options")
            profile = values.get("profile") or default_profile(self.spec.model, self.spec.data)
            train, _ = resolve_config(mode, profile, None, values, seq_len or 1,
                                      packaged_data=packaged_dataset(data) if data is not None else is_packaged(self.spec.data))
        except IfguideError:
            return does  # the inputs list says what is wrong
        rows = data.summary.get("rows") if data is not None else None
        if rows and seq_len:
            train_rows = len(split_rows(int(rows), train)[0])
            return f"{does}: {run_size(train_steps(train, int(rows)), train.batch_size, train_rows, int(seq_len))['words']}"
        if train.max_steps:
            return f"{does}: {train.max_steps:,} steps × {train.batch_size} rows" + (
                f" × {seq_len} tokens = {train.max_steps * train.batch_size * seq_len:,} tokens" if seq_len else "")
        return f"{does}: {train.epochs:g} epoch(s) in batches of {train.batch_size} rows"

    def trained(self, mode: str, model_ref: str | Any, values: dict, data, mask=None, *, masked: bool = False):
        """The checkpoint the train stage's key gives for (mode, model, data, mask, options), if stored; `masked`:
        trained with a mask, so a mask that would be new makes it new too."""
        from ifguide_cli.core.models import resolve_model
        from ifguide_cli.core.pipeline.runner import training_profile
        from ifguide_cli.core.training.stage import TrainRefs, TrainStage

        mref = resolve_model(model_ref, self.ws) if isinstance(model_ref, str) else model_ref
        if mref is None or data is None or (masked and mask is None):
            return None
        values = {"profile": training_profile(self.ws, self.spec.data, mref), **values}
        refs = TrainRefs(mode, mref.ref, data.id, mask.id if mask is not None else None, values)
        return reused(self.ws, TrainStage(lookup=True), refs, lambda inputs: inputs.train)

    def influence(self, base, data):
        """Factors, differential scores and the IF-Guide mask, as `pipeline._Run.influence_and_mask`."""
        scores = self.scores(self.factors(self.scorer(base, data), data), data, differential=True)
        return self.mask("mask", scores, self.configs.mask)

    def scorer(self, base, data):
        """The ModelRef the influence stages run on, as `pipeline._Run.scorer`: the baseline, a taken proxy, or the
        proxy trained on the run's dataset (None: it would be trained)."""
        proxy = self.proxy
        if proxy is None:
            return base
        if not proxy.trained:
            return proxy.model
        does = self.sized(f"train the proxy {proxy.ref} from scratch (factors and scores run on it)", "pretrain",
                          self.configs.proxy_train, data)
        return self.model(self.add("proxy", "checkpoints", does,
                                   self.trained("pretrain", proxy.ref, self.configs.proxy_train, data)))

    def factors(self, model, data):
        from ifguide_cli.core.influence.factors import FactorsRefs, FactorsStage

        cfg = self.configs.factors
        found = None if model is None or data is None else reused(self.ws, FactorsStage(),
                                                                  FactorsRefs(model.ref, data.id, cfg), lambda _: cfg)
        on = "the baseline" if self.proxy is None else self.proxy.describe()
        return self.add("factors", "factors", f"fit {cfg.strategy} factors on {on}", found)

    def scores(self, factors, data, *, differential: bool):
        """The scores of the factors' dataset (`data`), toxic minus safe queries or toxic ones only."""
        from ifguide_cli.core.influence.scores import ScoresRefs, ScoresStage

        sc, influence = self.configs.scores, self.spec.influence
        safe = influence.safe_queries if differential else None
        name, does = ("scores", "toxic − safe queries") if differential else ("scores_standard", "toxic queries only")
        found = None if factors is None or data is None else reused(
            self.ws, ScoresStage(), ScoresRefs(factors.id, influence.toxic_queries, safe, sc), lambda _: sc)
        on = "" if self.proxy is None else f" with {self.proxy.describe()}"
        return self.add(name, "scores", f"score every training token{on} ({does})", found)

    def mask(self, name: str, scores, cfg, source: str = "influence"):
        """A source's mask from the run's scores: the stored one its stage's key names (None: it would be built)."""
        from ifguide_cli.core.masking.source import MaskRefs, stored_mask

        found = None if scores is None else stored_mask(self.ws, source, MaskRefs(scores.id), cfg)
        return self.add(name, "masks", f"select up to {cfg.max_tokens:,} tokens (Alg. 1)", found)

    # ---- a comparison of arms, as `pipeline._Run.arm_masks` / `compare_arms` / `comparison_report` -------------
    def arm_masks(self, base, data) -> dict:
        from ifguide_cli.core.pipeline.arms import used_scores

        arms = self.configs.arms
        kinds = used_scores(arms)
        factors = self.factors(self.scorer(base, data), data) if kinds else None
        scores = {d: self.scores(factors, data, differential=d) for d in kinds}
        return {arm.name: self.mask(f"mask_{arm.name}", scores[arm.entry.scores], arm.mask, arm.source)
                if arm.entry.reads == "scores" else
                self.add(f"mask_{arm.name}", "masks", f"mark tokens with the {arm.source} source",
                         _source_mask(self.ws, data, arm))
                for arm in arms}

    def compare_arms(self, base, data, masks: dict) -> dict[str, Any]:
        """system → ModelRef (None: it would be trained): the baseline, then per seed the control and every arm."""
        from ifguide_cli.core.pipeline.arms import arm_runs

        pretrain = self.spec.scenario == "pretrain"
        mode, start = ("pretrain", self.spec.model) if pretrain else ("finetune", base)
        how = "train from scratch" if pretrain else "fine-tune the baseline"
        systems = {"baseline": base} if pretrain or self.spec.eval.evaluate_baseline else {}
        for run in arm_runs(self.configs.arms, list(self.configs.seeds)):
            mask = masks[run.arm.name] if run.arm else None
            does = f"{how}, seed {run.seed}: " + (run.arm.describe() if run.arm else "no mask (control)")
            found = None if start is None else self.trained(mode, start, run.values(self.configs.arm_train), data, mask,
                                                           masked=run.arm is not None)
            does = self.sized(does, mode, run.values(self.configs.arm_train), data)
            systems[run.system] = self.model(self.add(run.system, "checkpoints", does, found))
        return systems

    def comparison_report(self, evals: list) -> None:
        """The report against the first seed's control checkpoint, as `pipeline._Run.comparison_report` builds it."""
        from ifguide_cli.core.pipeline.arms import arm_runs

        if evals:
            control = self.systems.get(arm_runs(self.configs.arms, list(self.configs.seeds))[0].system)
            unique = list({id(e) if e is None else e.id: e for e in evals}.values())  # one checkpoint evaluated twice
            self.add("report", "reports", "the report: every arm against the control, with intervals",
                     self.report(unique, control.artifact_id if control is not None else None))

    def report(self, evals: list, control: str | None = None):
        """The stored report of these evals that the report stage's key names; None when an eval would be new (so
        would the report)."""
        from ifguide_cli.core.report.arms import ReportConfig
        from ifguide_cli.core.report.build import ReportRefs, ReportStage

        if any(e is None for e in evals):
            return None
        return reused(self.ws, ReportStage(), ReportRefs(tuple(evals), control), lambda _: ReportConfig())

    def detoxify(self, base, data, mask) -> dict[str, Any]:
        """system → ModelRef (None: it would be trained), as `pipeline._Run.detoxify`."""
        lam = self.spec.penalty.lam
        if self.spec.scenario == "pretrain":
            ifguide = self.add("ifguide", "checkpoints",
                               self.sized(f"train {self.spec.model} from scratch with the mask (λ = {lam:g})", "pretrain",
                                          self.configs.ifguide_train, data),
                           self.trained("pretrain", self.spec.model, {**self.configs.ifguide_train, "lam": lam}, data, mask,
                                        masked=True))
            return {"baseline": base, "ifguide": self.model(ifguide)}
        train = self.configs.finetune_train
        control = self.add("control", "checkpoints", self.sized("fine-tune the baseline (no penalty)", "finetune", train, data),
                           None if base is None else self.trained("finetune", base, train, data))
        ifguide = self.add("ifguide", "checkpoints",
                           self.sized(f"fine-tune the baseline with the mask (λ = {lam:g})", "finetune", train, data),
                           None if base is None else self.trained("finetune", base, {**train, "lam": lam}, data, mask,
                                                                  masked=True))
        systems = {"control": self.model(control), "ifguide": self.model(ifguide)}
        return {"baseline": base, **systems} if self.spec.eval.evaluate_baseline else systems

    def evaluated(self, systems: dict[str, Any]) -> list:
        """The evals of every system, in order (each a stored artifact, or None when it would be new)."""
        self.systems = systems
        return [e for system, mref in systems.items() for e in self.evaluate_system(system, mref)]

    def evaluate(self, systems: dict[str, Any]) -> None:
        evals = self.evaluated(systems)
        if evals:
            self.add("report", "reports", "the HTML report of every eval", self.report(evals))

    def evaluate_system(self, system: str, mref) -> list:
        out = []
        if self.spec.eval.toxicity:
            out.append(self.add(f"eval_toxicity_{system}", "evals", f"sample and classify {system}'s continuations",
                                self.toxicity_eval(mref)))
        if self.spec.eval.ppl_data is not None or self.spec.eval.lambada is not None:
            out.append(self.add(f"eval_fluency_{system}", "evals", f"perplexity and LAMBADA of {system}",
                                self.fluency_eval(mref)))
        return out

    def toxicity_eval(self, mref):
        from ifguide_cli.core.evaluation.stages import ToxicityRefs, ToxicitySettings, ToxicityStage
        from ifguide_cli.core.pipeline.runner import eval_prompts

        ev, classifier = self.spec.eval, self.inputs.classifier
        prompts = eval_prompts(ev, self.ws, mref) if mref is not None else None
        if prompts is None or classifier is None:
            return None
        settings = ToxicitySettings(generation=self.configs.generation)
        return reused(self.ws, ToxicityStage(), ToxicityRefs(mref, prompts, classifier, ev.num_prompts), lambda _: settings)

    def fluency_eval(self, mref):
        from ifguide_cli.core.evaluation.config import RuntimeConfig
        from ifguide_cli.core.evaluation.stages import FluencyRefs, FluencyStage
        from ifguide_cli.core.pipeline.runner import fluency_config

        if mref is None:
            return None
        flu = fluency_config(self.spec.eval, self.configs.fluency, mref, self.ws)
        return reused(self.ws, FluencyStage(), FluencyRefs(mref, flu), lambda _: RuntimeConfig())


def _data_verb(ref: str) -> str:
    """What the data stage does: the reference's OWT chunks are token ids already, read as rows; the rest is text."""
    from ifguide_cli.core.data.sources import is_token_subset

    return "read chunks of" if is_token_subset(ref) else "tokenize"


def _source_mask(ws: Workspace, data, arm):
    """The stored mask an arm whose source reads the training data would reuse: the one its stage's key gives for
    this dataset. None when there is none, or when the key cannot be known now (a missing classifier or word list:
    the inputs say so)."""
    from ifguide_cli.core.masking.source import stored_mask

    return None if data is None else stored_mask(ws, arm.source, arm.entry.refs(data=data.id, scores=None), arm.mask)


def _resolve_or_none(ws: Workspace, ref: str):
    from ifguide_cli.core.errors import ArtifactNotFound

    try:
        return ws.resolve(ref, "datasets")
    except ArtifactNotFound:
        return None
