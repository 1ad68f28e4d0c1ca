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


def dump_yaml(data: dict) -> str:
    """The YAML text of a mapping, as a user would write it: keys in their order, unicode as is, block style, and
    no line wrapped (PyYAML folds long strings at 80 columns by default, which breaks long paths and hub ids when
    the text is copied or diffed)."""
    import yaml

    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False, width=float("inf"))
