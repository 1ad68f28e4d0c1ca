"""The pipeline file (`ifguide run PIPELINE.yaml`): typed sections, each checked before any stage runs.

A pipeline file has the sections model, data, baseline, influence, mask, finetune and eval. The pipeline's
own structure is typed here (one `Config` per section). The option sets that belong to another stage —
`ifguide train` options, factors, scores and mask options — stay mappings in the spec and are checked by
one function each (`train_options`, `factors_config`, `scores_config`, `mask_config`, `generation_config`),
the single place where the pipeline meets that stage's own config. `stage_configs` runs all of them, so a
bad value anywhere in the file is one error line before hours of training, not after.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .config import Config, field_hints, param
from .errors import IfguideError

PRESETS = ("tiny",)


class Section(Config):
    """A pipeline section. Its `Mapping` fields are other stages' option sets: an empty YAML value means {}."""

    def __post_init__(self) -> None:
        hints = field_hints(type(self))
        for f in dataclasses.fields(self):
            if typing.get_origin(hints[f.name]) is Mapping:
                object.__setattr__(self, f.name, _mapping(getattr(self, f.name), f.name))
        super().__post_init__()


@dataclass(frozen=True)
class BaselineSpec(Section):
    """`baseline:` train the model to detoxify from scratch, or start from an existing one."""

    checkpoint: str | None = param(None, "Start from this model or checkpoint instead of training a baseline.")
    train: Mapping[str, Any] = param(default_factory=dict, help="`ifguide train` options of the baseline ({} = the profile's).")


@dataclass(frozen=True)
class InfluenceSpec(Section):
    """`influence:` the query sets and the options of `ifguide factors` and `ifguide scores`."""

    toxic_queries: str = param("tiny-queries-toxic", "Toxic prompt+continuation queries.")
    safe_queries: str | None = param("tiny-queries-safe", "Safe queries subtracted from the toxic ones (null: none).")
    factors: Mapping[str, Any] = param(default_factory=dict, help="`ifguide factors` options.")
    scores: Mapping[str, Any] = param(default_factory=dict, help="`ifguide scores` options.")


@dataclass(frozen=True)
class FinetuneSpec(Section):
    """`finetune:` the penalty weight of IF-Guide and the options of both fine-tunes (IF-Guide and control)."""

    lam: float = param(1.0, "Penalty weight λ of masked tokens (Eq. 9).", flag="--lambda", low=0)
    train: Mapping[str, Any] = param(default_factory=dict, help="`ifguide finetune` options of both fine-tunes ({} = the profile's).")

    def check(self) -> None:
        if {"lambda", "lam"} & set(self.train):
            raise IfguideError("set λ as finetune.lambda, not in finetune.train (the control fine-tune has no penalty)",
                               exit_code=2)


@dataclass(frozen=True)
class EvalSpec(Section):
    """`eval:` toxicity (prompts, classifier, sampling) and fluency of every system."""

    prompts: str = param("rtp", "Prompt set.")
    classifier: str = param("detoxify-unbiased", "Toxicity classifier.")
    num_prompts: int | None = param(None, "A seeded subset of this many prompts (null: all).", low=1)
    samples: int = param(25, "Continuations per prompt.")
    max_new_tokens: int = param(20, "Tokens per continuation.")
    top_p: float = param(0.9, "Nucleus sampling mass.")
    seed: int = param(0, "Sampling seed.")
    batch_size: int = param(8, "Prompts per generate call.")
    ppl_data: str | None = param(None, "Perplexity text (null: the model's default held-out text).")
    lambada: str | None = param(None, "LAMBADA set (null: the model's default).")
    evaluate_baseline: bool = param(True, "Also evaluate the baseline.")


@dataclass(frozen=True)
class PipelineSpec(Section):
    """What `ifguide run PIPELINE.yaml` reads; every section maps onto one command's options."""

    model: str = param("tiny", "Architecture of the baseline (registry name, hub id or local folder).")
    data: str = param("tiny", "Training corpus (registry name, local file or hub id).")
    baseline: BaselineSpec = field(default_factory=BaselineSpec, metadata={"help": "How the baseline is made."})
    influence: InfluenceSpec = field(default_factory=InfluenceSpec, metadata={"help": "Queries, factors and scores."})
    mask: Mapping[str, Any] = param(default_factory=dict, help="`ifguide mask` options: threshold, window, max_tokens.")
    finetune: FinetuneSpec = field(default_factory=FinetuneSpec, metadata={"help": "λ and the fine-tunes' options."})
    eval: EvalSpec = field(default_factory=EvalSpec, metadata={"help": "Evaluation of every system."})


SECTIONS = {"baseline": BaselineSpec, "influence": InfluenceSpec, "finetune": FinetuneSpec, "eval": EvalSpec}
YAML_KEYS = {"lam": "lambda"}  # field → key in the file, where the key is not a Python name


# ---- reading a pipeline file ---------------------------------------------------------------------
def preset_path(name: str) -> Path:
    if name not in PRESETS:
        raise IfguideError(f"unknown preset {name!r}", hint=f"use one of {', '.join(PRESETS)} or a YAML file", exit_code=2)
    return Path(str(resources.files("ifguide_cli") / "assets" / "presets" / f"{name}.yaml"))


def pipeline_file(pipeline: str | None, preset: str | None) -> Path:
    """The pipeline file `ifguide run` was given: a YAML path or a preset name (exactly one)."""
    if (pipeline is None) == (preset is None):
        raise IfguideError("give either a PIPELINE.yaml file or --preset", hint="e.g. `ifguide run --preset tiny`", exit_code=2)
    path = preset_path(preset) if preset else Path(pipeline)
    if not path.is_file():
        raise IfguideError(f"pipeline file {path} does not exist", hint="pass a YAML file or --preset tiny", exit_code=2)
    return path


def load_spec(path: str | Path) -> PipelineSpec:
    """Parse and check a pipeline YAML file; unknown keys are errors (a typo must not silently fall back to a default)."""
    from .yamlfile import load_yaml_mapping

    raw = load_yaml_mapping(path, "pipeline file", hint="pass a YAML file or --preset tiny")
    return spec_from_dict(raw, str(path))


def spec_from_dict(raw: dict, source: str = "the pipeline") -> PipelineSpec:
    """The spec of a parsed pipeline file, every section and every stage's options checked."""
    raw = _mapping(raw, source)
    sections = {name: _build(cls, raw[name], f"{source}: {name}") for name, cls in SECTIONS.items() if name in raw}
    spec = _build(PipelineSpec, {**raw, **sections}, source, noun="section")
    stage_configs(spec, source)  # fail now, before the first stage runs
    return spec


# ---- the option sets of other stages: one place each ---------------------------------------------
@dataclass(frozen=True)
class StageConfigs:
    """Every stage's checked configuration, as `run_pipeline` hands it to the stage functions."""

    baseline_train: dict
    factors: Any  # influence.FactorsConfig
    scores: Any  # influence.ScoresConfig
    mask: Any  # masking.MaskConfig
    finetune_train: dict
    generation: Any  # evaluation.GenerationConfig


def stage_configs(spec: PipelineSpec, source: str = "the pipeline") -> StageConfigs:
    """Check every stage's options of the spec (names and values) and build the stage configs."""
    return StageConfigs(
        baseline_train=train_options(spec.baseline.train, "pretrain", f"{source}: baseline.train"),
        factors=factors_config(spec.influence.factors, f"{source}: influence.factors"),
        scores=scores_config(spec.influence.scores, spec.influence.safe_queries is not None, f"{source}: influence.scores"),
        mask=mask_config(spec.mask, f"{source}: mask"),
        finetune_train=train_options(spec.finetune.train, "finetune", f"{source}: finetune.train"),
        generation=generation_config(spec.eval, f"{source}: eval"),
    )


def train_options(options: dict, mode: str, where: str) -> dict:
    """Check `ifguide train`/`finetune` options (names and values); returns them as given.

    What depends on the corpus (`batch_tokens` against the sequence length) is checked when the stage runs.
    """
    from .training.config import given_values, resolve_config

    with _about(where):
        values = given_values(options, where)
        resolve_config(mode, "paper", None, {k: v for k, v in values.items() if k != "batch_tokens"}, seq_len=1)
    return options


def factors_config(options: dict, where: str):
    """The `influence.factors` options as the factors stage's config."""
    from .influence import FactorsConfig

    return _build(FactorsConfig, options, where)


def scores_config(options: dict, differential: bool, where: str):
    """The `influence.scores` options as the scores stage's config (`differential`: safe queries are given)."""
    from .influence import ScoresConfig

    cfg = _build(ScoresConfig, options, where)
    with _about(where):
        cfg.check_differential(differential)
    return cfg


def mask_config(options: dict, where: str):
    """The `mask` options as the mask stage's config."""
    from .masking import MaskConfig

    return _build(MaskConfig, options, where)


def generation_config(spec: EvalSpec, where: str):
    """The sampling options of the `eval` section as the toxicity evaluation's config."""
    from .evaluation import GenerationConfig

    with _about(where):
        return GenerationConfig(samples=spec.samples, max_new_tokens=spec.max_new_tokens, top_p=spec.top_p, seed=spec.seed,
                                batch_size=spec.batch_size)


# ---- helpers ---------------------------------------------------------------------------------------
def _mapping(value: Any, where: str) -> dict:
    """A section's mapping; an empty section (`train:` with nothing after it) is an empty one."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise IfguideError(f"{where} must be a mapping of key: value; got {value!r}", exit_code=2)
    return dict(value)


def _build(cls: type, values: Any, where: str, noun: str = "key"):
    """A dataclass from one section of the file: unknown keys are one error naming them and the section."""
    values = _mapping(values, where)
    names = {YAML_KEYS.get(f.name, f.name): f.name for f in dataclasses.fields(cls)}
    unknown = [k for k in values if k not in names]
    if unknown:
        raise IfguideError(f"unknown {noun}(s) {', '.join(map(repr, unknown))} in {where}",
                           hint=f"allowed: {', '.join(names)}", exit_code=2)
    values = {names[k]: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    with _about(where):
        return cls(**values)


@contextmanager
def _about(where: str) -> Iterator[None]:
    """Say which section a value error comes from (`pipeline.yaml: finetune: --lambda must be …`), once."""
    try:
        yield
    except IfguideError as exc:
        if where in exc.message:
            raise
        raise type(exc)(f"{where}: {exc.message}", hint=exc.hint, exit_code=exc.exit_code) from None
