"""A registry of named extensions whose objects are imported on first use, not when the registry is read.

Each entry maps a name to a target string, ``"package.module:object"``; `Registry.get` imports the module and
takes the object the first time the name is asked for, and keeps it. Listing the names (`names`, a CLI's
choices, a config's `Literal`) imports nothing, so `ifguide --help` stays instant and the modules that declare
registries import nothing of the project: they are leaves of the import graph. The pattern is
lm-evaluation-harness's `lm_eval/api/registry.py` (lazy ``"module:object"`` placeholders materialised on
first lookup). A registry may load its targets another way (`load`): the presets are package data files.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Generic, TypeVar

from ifguide_cli.core.errors import IfguideError

T = TypeVar("T")


def import_target(target: str) -> Any:
    """The object a ``"package.module:object"`` string names (``object`` may be dotted: ``Class.attr``)."""
    module_name, _, attr = target.partition(":")
    value: Any = importlib.import_module(module_name)
    for part in attr.split(".") if attr else ():
        value = getattr(value, part)
    return value


def package_file(target: str) -> Path:
    """The file a ``"package:file name"`` string names inside an installed package (its data files)."""
    package, _, name = target.partition(":")
    return Path(str(resources.files(package) / name))


class Registry(Generic[T]):
    """Names → lazily loaded objects (see the module docstring). ``what`` names one entry in messages; ``hint``
    (``{names}`` in it lists the names) says what to do about an unknown one."""

    def __init__(self, what: str, entries: Mapping[str, str], *, load: Callable[[str], Any] = import_target,
                 hint: str = "use one of {names}"):
        self.what, self.hint, self._load = what, hint, load
        self._targets: dict[str, str] = dict(entries)
        self._loaded: dict[str, T] = {}

    def register(self, name: str, target: str) -> None:
        """Add (or replace) an entry at run time: a plugin, or a test's own source."""
        self._targets[name] = target
        self._loaded.pop(name, None)

    def unregister(self, name: str) -> None:
        self._targets.pop(name, None)
        self._loaded.pop(name, None)

    def names(self) -> tuple[str, ...]:
        """Every registered name, in registration order (nothing is imported)."""
        return tuple(self._targets)

    def target(self, name: str) -> str:
        return self._targets[self._known(name)]

    def get(self, name: str) -> T:
        """The object registered as ``name``, loaded now if it was not yet; an unknown name is one line."""
        if name not in self._loaded:
            self._loaded[name] = self._load(self._targets[self._known(name)])
        return self._loaded[name]

    def items(self) -> Iterator[tuple[str, T]]:
        """(name, object) of every entry, each loaded."""
        return ((name, self.get(name)) for name in self.names())

    def __contains__(self, name: object) -> bool:
        return name in self._targets

    def _known(self, name: str) -> str:
        if name not in self._targets:
            raise IfguideError(f"unknown {self.what} {name!r}", hint=self.hint.format(names=", ".join(self._targets)),
                               exit_code=2)
        return name
