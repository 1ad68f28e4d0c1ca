"""Arms of a report and their comparison with the control, with intervals (`core/statistics`).

An ARM is one way of training (a mask source, a suppression, λ …) repeated over seeds: the systems whose
checkpoint's training config is identical except `seed` (and whose eval defense is the same). A system that
was not trained here (a registry model) is an arm of its own. The CONTROL is the arm everything is compared
with: `--control`, else the one fine-tune without a mask (else the one pre-training without a mask).

Each arm is compared with the control on the same prompts and held-out documents: per prompt, the maximum
toxicity of each seed (read from the eval's continuations.jsonl), per document the NLL sum and token count
(perplexity_docs.jsonl); the statistics pair them unit by unit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ifguide_cli.core.config import Config, param
from ifguide_cli.core.errors import ArtifactNotFound, IfguideError
from ifguide_cli.core.notes import warn
from ifguide_cli.core.seed_names import SEED_SUFFIX
from ifguide_cli.core.store.workspace import canonical_json

if TYPE_CHECKING:
    from ifguide_cli.core.store.workspace import Artifact, Workspace

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
TEST_NAME = "paired sign-flip test (exact McNemar for TP of one seed per arm)"


@dataclass(frozen=True)
class ReportConfig(Config):
    """How the report's intervals and p-values are computed (part of the report artifact's identity)."""

    draws: int = param(2000, "Bootstrap resamples of the prompts / documents, and sign patterns of the paired test.",
                       flag="--bootstrap", low=200, high=1_000_000)
    seed: int = param(0, "Seed of the resampling (the same seed gives the same intervals and p-values).",
                      low=0, high=2**32 - 1)


@dataclass
class Arm:
    """Systems (report rows) trained the same way but for the seed; `training` is the first one's checkpoint config."""

    name: str
    key: str
    rows: list[dict] = field(default_factory=list)
    training: dict | None = None
    seeds: list = field(default_factory=list)
    colour: str = PALETTE[0]

    @property
    def defense(self) -> str:
        return self.rows[0]["defense"]

    @property
    def checkpoints(self) -> list[str]:
        return [r["checkpoint"] for r in self.rows if r.get("checkpoint")]

    def listing(self) -> dict:
        return {"name": self.name, "seeds": self.seeds, "colour": self.colour, "systems": [r["label"] for r in self.rows],
                "checkpoints": self.checkpoints}


# ---- grouping ---------------------------------------------------------------------------------------------
def _without_seed(config: dict) -> dict:
    out = {k: v for k, v in config.items() if k != "seed"}
    if isinstance(out.get("train"), dict):
        out["train"] = {k: v for k, v in out["train"].items() if k != "seed"}
    return out


def _arm_of(workspace: Workspace, row: dict) -> tuple[str, str, dict | None, object]:
    """(key, name, training config, seed) of a row's arm."""
    ckpt = workspace.by_id(row["checkpoint"]) if row.get("checkpoint") else None
    if ckpt is None:
        return f"system:{row['label']}", row["label"], None, None
    base = SEED_SUFFIX.sub("", ckpt.name or "") or row["label"]
    name = base if row["defense"] in ("none", None) else f"{base} + {row['defense']}"
    return canonical_json([_without_seed(ckpt.config), row["defense"]]), name, ckpt.config, ckpt.config.get("seed")


def group_arms(workspace: Workspace, rows: list[dict]) -> list[Arm]:
    """The arms of the rows, in the order of their first row; each row gets its arm's name and colour."""
    arms: dict[str, Arm] = {}
    for row in rows:
        key, name, training, seed = _arm_of(workspace, row)
        arm = arms.setdefault(key, Arm(name, key, training=training))
        arm.rows.append(row)
        arm.seeds.append((seed, name))
    out = list(arms.values())
    for arm in out:  # seeds in order; the arm is named after its lowest seed's checkpoint (`x` rather than `x-3`)
        order = sorted(range(len(arm.rows)), key=lambda j: (arm.seeds[j][0] is None, arm.seeds[j][0] or 0))
        arm.name = arm.seeds[order[0]][1]
        arm.rows, arm.seeds = [arm.rows[j] for j in order], [arm.seeds[j][0] for j in order]
    names = [a.name for a in out]
    for i, arm in enumerate(out):
        if names.count(arm.name) > 1:
            arm.name = f"{arm.name} [{(arm.checkpoints or [arm.rows[0]['evals'][0]])[0][:6]}]"
        arm.colour = PALETTE[i % len(PALETTE)]
        for row in arm.rows:
            row["arm"], row["colour"] = arm.name, arm.colour
    return out


def _default_control(arms: list[Arm]) -> Arm | None:
    """The fine-tune without a mask if there is exactly one, else the pre-training without a mask if exactly one."""
    plain = [a for a in arms if a.training is not None and a.training.get("mask") is None and a.defense == "none"]
    for mode in ("finetune", "pretrain"):
        found = [a for a in plain if (a.training or {}).get("mode") == mode]
        if len(found) > 1:
            warn(f"{len(found)} systems could be the control ({', '.join(a.name for a in found)}): no comparison "
                 "with intervals; pass --control to choose one")
            return None
        if found:
            return found[0]
    return None


def choose_control(workspace: Workspace, arms: list[Arm], ref: str | None) -> Arm | None:
    """The arm named `ref`, or holding checkpoint `ref` (id, name, prefix); the default control without `ref`."""
    if ref is None:
        return _default_control(arms)
    names = ", ".join(a.name for a in arms)
    for arm in arms:
        if arm.name == ref:
            return arm
    try:
        ckpt = workspace.resolve(ref, "checkpoints")
    except ArtifactNotFound:
        raise IfguideError(f"--control {ref}: no compared arm or checkpoint of that name",
                           hint=f"name a checkpoint or one of the arms: {names}", exit_code=2) from None
    holding = sorted((a for a in arms if ckpt.id in a.checkpoints), key=lambda a: a.defense != "none")
    if not holding:
        raise IfguideError(f"--control {ref}: checkpoint {ckpt.id} has no eval among the ones given",
                           hint=f"add its evals to the report, or name one of the arms: {names}", exit_code=2)
    return holding[0]


# ---- per-unit data ----------------------------------------------------------------------------------------
def _prompt_maxima(ev) -> tuple[list[str], list[float]]:
    """(prompts, the maximum score of each prompt's continuations) of a toxicity eval, for its headline attribute."""
    from ifguide_cli.core.evaluation.stages import read_continuations

    attribute = ev.summary.get("primary_attribute")
    records = read_continuations(ev)
    return [r["prompt"] for r in records], [max(r["scores"][attribute]) for r in records]


def _same_prompts(first: tuple, other: tuple) -> None:
    (a, pa), (b, pb) = first, other
    if pa == pb:
        return
    where = (f", first different prompt: #{next(i for i, (x, y) in enumerate(zip(pa, pb, strict=True)) if x != y) + 1}"
             if len(pa) == len(pb) else "")
    raise IfguideError(f"the toxicity evals do not score the same prompts: {a.id} has {len(pa)}, {b.id} has {len(pb)}{where}",
                       hint="evaluate every compared system on the same prompt set (same --prompts and --num-prompts)",
                       exit_code=2)


def _agree(first: dict, key: str, ev, value, problem: str, hint: str) -> None:
    """Remember the first eval's `value` of `key`; a later eval with another one is one line naming both."""
    ref = first.setdefault(key, (ev, value))
    if ref[1] != value:
        raise IfguideError(f"{problem}: {ref[0].id}, {ev.id}", hint=hint, exit_code=2)


def stored_eval(workspace: Workspace, aid: str) -> Artifact:
    """The eval artifact a report row names (one removed since the rows were built is one line)."""
    art = workspace.by_id(aid)
    if art is None:
        raise ArtifactNotFound(f"eval {aid} was removed while the report was being built", hint="run the report again")
    return art


def toxicity_data(workspace: Workspace, arms: list[Arm]) -> dict[str, dict]:
    """Per arm with a toxicity eval: {"maxima": per seed, per prompt; "evals"; "prompts"}; one line if the evals
    score different prompts or use different classifiers."""
    out: dict[str, dict] = {}
    first: dict[str, tuple] = {}  # the first eval and its value of each key that must agree
    for arm in arms:
        evals = [stored_eval(workspace, r["toxicity_eval"]) for r in arm.rows if r.get("toxicity_eval")]
        maxima = []
        for ev in evals:
            _agree(first, "classifier", ev, (ev.summary.get("classifier"), ev.summary.get("primary_attribute")),
                   "the toxicity evals use different classifiers", "compare evals scored by one classifier")
            prompts, values = _prompt_maxima(ev)
            _same_prompts(first.setdefault("prompts", (ev, prompts)), (ev, prompts))
            maxima.append(values)
        if maxima:
            out[arm.name] = {"maxima": maxima, "evals": [e.id for e in evals], "prompts": len(first["prompts"][1])}
    return out


def fluency_data(workspace: Workspace, arms: list[Arm]) -> dict[str, dict]:
    """Per arm with a perplexity: the seeds' perplexities and, when every eval stored them, per-document NLL sums
    and token counts; one line if the evals measured different held-out text."""
    from ifguide_cli.core.evaluation.stages import read_perplexity_docs

    out: dict[str, dict] = {}
    first: dict[str, tuple] = {}  # the first eval and its value of each key that must agree
    for arm in arms:
        evals = [stored_eval(workspace, r["fluency_eval"]) for r in arm.rows if r.get("fluency_eval")]
        if not evals:
            continue
        for ev in evals:
            _agree(first, "text", ev, canonical_json(ev.config.get("perplexity_data")),
                   "the fluency evals measure perplexity on different text",
                   "evaluate every compared system on the same --ppl-data")
        docs = [read_perplexity_docs(ev) for ev in evals]
        out[arm.name] = {"perplexity": [ev.summary.get("perplexity") for ev in evals],
                         "docs": None if any(d is None for d in docs) else docs}
    return out
