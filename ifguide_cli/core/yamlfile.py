"""Reading the YAML files users write (training configs, pipelines): one clear line for every way they go wrong."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import IfguideError


def load_yaml_mapping(path: str | os.PathLike, what: str = "config file", hint: str | None = None) -> dict:
    """The mapping in a YAML file (an empty file is an empty mapping)."""
    import yaml

    p = Path(path).expanduser()
    if not p.is_file():
        raise IfguideError(f"{what} {path} does not exist", hint=hint, exit_code=2)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise IfguideError(f"{what} {path} is not valid YAML ({str(exc).splitlines()[0]})", exit_code=2) from None
    if not isinstance(data, dict):
        raise IfguideError(f"{what} {path} must be a mapping of key: value", exit_code=2)
    return data
