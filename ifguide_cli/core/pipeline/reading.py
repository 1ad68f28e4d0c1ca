"""Reading a pipeline file (`ifguide run PIPELINE.yaml`): parse it, apply the `--set` overrides, build the typed
spec (`pipeline.spec`) and check every stage's options (`pipeline.stage_configs`, the arms included), so a bad
value anywhere in the file is one error line before the first stage runs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ifguide_cli.core.pipeline.spec import (
    SECTIONS,
    PipelineSpec,
    apply_overrides,
    arm_specs,
    as_mapping,
    build_section,
)
from ifguide_cli.core.pipeline.stage_configs import stage_configs


@dataclass(frozen=True)
class PipelineFile:
    """A pipeline as `ifguide run` reads it: the file, the `--set` overrides, the mapping they give, and its spec."""

    path: Path
    overrides: tuple[str, ...]
    raw: dict  # the file's mapping with the overrides applied: what the run records as its config
    spec: PipelineSpec


def read_pipeline(path: str | Path, overrides: Sequence[str] = ()) -> PipelineFile:
    """Parse a pipeline file, apply `--set` overrides, and check everything (as `load_spec`)."""
    from ifguide_cli.core.yamlfile import load_yaml_mapping

    raw = apply_overrides(load_yaml_mapping(path, "pipeline file", hint="pass a YAML file or --preset tiny"), overrides)
    return PipelineFile(Path(path), tuple(overrides), raw, spec_from_dict(raw, str(path)))


def load_spec(path: str | Path) -> PipelineSpec:
    """Parse and check a pipeline YAML file; unknown keys are errors (a typo must not silently fall back to a default)."""
    return read_pipeline(path).spec


def spec_from_dict(raw: dict, source: str = "the pipeline") -> PipelineSpec:
    """The spec of a parsed pipeline file, every section and every stage's options checked."""
    raw = as_mapping(raw, source)
    sections = {name: build_section(cls, raw[name], f"{source}: {name}") for name, cls in SECTIONS.items() if name in raw}
    if "arms" in raw:
        sections["arms"] = arm_specs(raw["arms"], source)
    spec = build_section(PipelineSpec, {**raw, **sections}, source, noun="section")
    stage_configs(spec, source)  # fail now, before the first stage runs
    return spec


def effective_yaml(pipeline: PipelineFile) -> str:
    """The pipeline with its overrides applied, as a YAML file `ifguide run` reads back (never wrapped)."""
    import yaml

    header = f"# {pipeline.path.name} with --set {' --set '.join(pipeline.overrides)}\n" if pipeline.overrides else ""
    return header + yaml.safe_dump(pipeline.raw, sort_keys=False, allow_unicode=True, width=float("inf"))
