"""The arms of a comparison run (`arms:` in a pipeline file): each arm's mask source, its checked options, and the
fine-tunes (or pre-trainings) every arm and the plain control get over the seeds.

An arm is a registered mask source (`extensions.MASK_SOURCES`) plus a suppression mode. A source that reads
influence scores (`influence`: toxic minus safe queries; `standard-influence`, the paper's ablation: toxic
queries only; …) is fed the pipeline's own chain — factors → scores — and the arms share its factors; the others
(`classifier`, `wordlist`, …) read the training data. Every arm's options are checked through its source's config
class before the first stage, so a bad value is one line naming its key (`arms[2].mask.window`). An arm takes from
the mask section what its source inherits (Alg. 1's options for the influence sources, the token budget for the
others), so arms compare at the same budget.

`arm_runs` lists the trainings in the order both `pipeline._Run` and `pipeline.plan._Planner` walk them: per seed
(seed, seed + 1, …) the control, then every arm, all from the same baseline with the same options, so two
systems of one seed differ only in their mask and its suppression.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.masking.source import MaskSourceEntry, mask_source
from ifguide_cli.core.pipeline.spec import PipelineSpec, about_keys


@dataclass(frozen=True)
class ArmConfig:
    """One arm, checked: its source's config object, and what its training adds to the shared options."""

    name: str
    source: str
    suppression: str
    lam: float | None  # penalty: the arm's λ (default the scenario's); filter/drop: None
    mask: Any  # the source's config (masking.MaskConfig for the influence sources)

    @property
    def entry(self) -> MaskSourceEntry:
        """Its registered mask source."""
        return mask_source(self.source)

    def train_values(self) -> dict:
        """The training options the arm adds to the shared ones: its suppression mode (and λ for penalty)."""
        return {"suppression": self.suppression, **({"lam": self.lam} if self.suppression == "penalty" else {})}

    def to_json(self) -> dict:
        return {"name": self.name, "source": self.source, "suppression": self.suppression, "lambda": self.lam,
                "mask": self.mask.to_dict()}

    def describe(self) -> str:
        """What the arm does, for the plan: `influence mask → penalty (λ = 1.5)`."""
        lam = f" (λ = {self.lam:g})" if self.lam is not None else ""
        return f"{self.source} mask → {self.suppression}{lam}"


def arm_configs(spec: PipelineSpec, source: str = "the pipeline") -> tuple[ArmConfig, ...]:
    """Every arm of the spec with its mask options checked by its source's config class (`Config.from_dict`)."""
    out = []
    for i, arm in enumerate(spec.effective_arms):
        entry = mask_source(arm.source)
        where = f"{source}: arms[{i}].mask"
        with about_keys(where, entry.config):
            cfg = entry.config.from_dict({**entry.inherited(spec.mask), **arm.mask}, where)
        if entry.scores and spec.influence.safe_queries is None:
            raise IfguideError(f"{source}: arms[{i}].source {arm.source} subtracts the safe queries, but "
                               "influence.safe_queries is null", hint="set influence.safe_queries, or use source "
                                                                       "standard-influence (toxic queries only)", exit_code=2)
        lam = (spec.penalty.lam if arm.lam is None else arm.lam) if arm.suppression == "penalty" else None
        out.append(ArmConfig(arm.name, arm.source, arm.suppression, lam, cfg))
    return tuple(out)


@dataclass(frozen=True)
class ArmRun:
    """One training of a comparison: a system (`control` or an arm, `@seedN` with several seeds) at one seed."""

    system: str
    seed: int
    arm: ArmConfig | None  # None: the plain control

    def values(self, shared: dict) -> dict:
        """Its training options: the shared ones, its seed, and its arm's suppression (and λ)."""
        return {**shared, "seed": self.seed, **(self.arm.train_values() if self.arm else {})}


def run_seeds(shared: dict, count: int) -> list[int]:
    """seed, seed + 1, …: the seed of the shared training options (default TrainConfig's), `count` of them."""
    from ifguide_cli.core.training.config import TrainConfig, given_values

    base = given_values(shared, "the training options").get("seed", TrainConfig.seed)
    return [base + k for k in range(count)]


def arm_runs(arms: tuple[ArmConfig, ...], seeds: list[int]) -> list[ArmRun]:
    """The trainings in run order: per seed, the control, then each arm. With several seeds a system is named
    `NAME-seedN`, the suffix the report strips to group an arm's seeds (an arm name cannot end in one)."""
    def system(name: str, seed: int) -> str:
        return name if len(seeds) == 1 else f"{name}-seed{seed}"

    return [run for seed in seeds
            for run in [ArmRun(system("control", seed), seed, None), *(ArmRun(system(a.name, seed), seed, a) for a in arms)]]


def used_scores(arms: tuple[ArmConfig, ...]) -> list[bool]:
    """The influence scores the arms need, in stage order: differential (True) and/or toxic-only (False)."""
    return [d for d in (True, False) if any(a.entry.scores is d for a in arms)]
