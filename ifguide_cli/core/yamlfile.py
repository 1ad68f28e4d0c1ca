"""Reading the YAML files users write (training configs, pipelines): one clear line for every way they go wrong.

The loader is PyYAML's safe one with limits, so a hostile or broken file cannot hang the tool or exhaust its
memory: at most MAX_BYTES, MAX_ALIASES alias references (`*name`), MAX_NODES values once aliases are expanded (a
"billion laughs" file expands a few lines into billions of values wherever it is walked or printed; the expanded
size is counted on the parsed graph, without expanding it) and MAX_DEPTH levels of nesting. A refusal names the
file and the limit, never the expansion. The same limits apply to a value given on the command line (`--set`).
A key written twice in one mapping is refused (YAML would keep the last silently), and so is an integer too long
for Python to convert (over 4,300 digits).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ifguide_cli.core.errors import IfguideError

MAX_BYTES = 4 << 20
MAX_ALIASES = 100
MAX_NODES = 200_000
MAX_DEPTH = 64


class _Refused(Exception):
    """A limit of the loader was reached (caught below and turned into an IfguideError naming the file)."""


def _limited_loader():
    """A SafeLoader subclass that counts what it composes (created lazily: yaml is imported only when needed)."""
    import yaml

    class LimitedLoader(yaml.SafeLoader):
        def __init__(self, stream):
            super().__init__(stream)
            self._aliases = self._nodes = self._depth = 0

        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                self._aliases += 1
                if self._aliases > MAX_ALIASES:
                    raise _Refused(f"uses more than {MAX_ALIASES} aliases (*name); write the values out")
            self._nodes += 1
            if self._nodes > MAX_NODES:
                raise _Refused(f"holds more than {MAX_NODES} values")
            self._depth += 1
            if self._depth > MAX_DEPTH:
                raise _Refused(f"is nested more than {MAX_DEPTH} levels deep")
            try:
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1

        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if isinstance(key, (str, int, float, bool)) or key is None:
                    if key in seen:
                        raise _Refused(f"has the key {key!r} twice (line {key_node.start_mark.line + 1}); keep one")
                    seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return LimitedLoader


def _expanded_size(node, memo: dict) -> int:
    """How many values `node` stands for with every alias written out (memoised: the graph is walked once)."""
    key = id(node)
    if memo.get(key, 1) is None:
        raise _Refused("refers to itself (an alias inside its own anchor)")
    if key not in memo:
        memo[key] = None  # in progress
        children = node.value if isinstance(node.value, list) else []
        items = [v for pair in children for v in pair] if children and isinstance(children[0], tuple) else children
        memo[key] = min(1 + sum(_expanded_size(child, memo) for child in items), MAX_NODES + 1)
    return memo[key]


def _read_text(p: Path, path: str | os.PathLike, what: str, hint: str | None) -> str:
    if not p.exists():
        raise IfguideError(f"{what} {path} does not exist", hint=hint, exit_code=2)
    if not p.is_file():
        raise IfguideError(f"{what} {path} is not a regular file", hint=hint, exit_code=2)
    try:
        if p.stat().st_size > MAX_BYTES:
            raise IfguideError(f"{what} {path} is {p.stat().st_size >> 20} MiB; a YAML file here is at most {MAX_BYTES >> 20} MiB",
                               exit_code=2)
        raw = p.read_bytes()
    except OSError as exc:
        raise IfguideError(f"{what} {path} cannot be read ({exc.strerror or exc})", exit_code=2) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise IfguideError(f"{what} {path} is not UTF-8 text (line {line})", hint="save it as UTF-8 YAML", exit_code=2) from None


def load_yaml_text(text: str, where: str) -> Any:
    """The value of a YAML document (None when empty), within the limits; `where` names it in an error
    ("config file c.yaml", "--set value '…'")."""
    import yaml

    try:
        loader = _limited_loader()(text)
        try:
            node = loader.get_single_node()
            if node is not None and _expanded_size(node, {}) > MAX_NODES:
                raise _Refused(f"expands to more than {MAX_NODES} values (aliases of aliases); write the values out")
            return loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except _Refused as exc:
        raise IfguideError(f"{where} {exc}", exit_code=2) from None
    except RecursionError:
        raise IfguideError(f"{where} is nested too deeply", exit_code=2) from None
    except yaml.YAMLError as exc:
        raise IfguideError(f"{where} is not valid YAML ({str(exc).splitlines()[0]})", exit_code=2) from None
    except ValueError as exc:  # int() of more than 4,300 digits
        raise IfguideError(f"{where} holds a number that cannot be read ({str(exc).splitlines()[0]})", exit_code=2) from None


def load_yaml_mapping(path: str | os.PathLike, what: str = "config file", hint: str | None = None) -> dict:
    """The mapping in a YAML file (an empty file is an empty mapping)."""
    p = Path(path).expanduser()
    text = _read_text(p, path, what, hint)
    data = load_yaml_text(text, f"{what} {path}") or {}
    if not isinstance(data, dict):
        raise IfguideError(f"{what} {path} must be a mapping of key: value", exit_code=2)
    return data


def dump_yaml(data: dict) -> str:
    """The YAML text of a mapping, as a user would write it: keys in their order, unicode as is, block style, and
    no line wrapped (PyYAML folds long strings at 80 columns by default, which breaks long paths and hub ids when
    the text is copied or diffed)."""
    import yaml

    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False, width=float("inf"))
