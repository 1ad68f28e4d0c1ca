"""Typed stage configurations: one frozen dataclass per stage is the single source of truth.

Each field is declared once with `param(...)`: its default, its help text, its CLI flag and its valid
range. `Config.__post_init__` validates every field from that declaration (type, `Literal` choices,
finite numbers, ranges), so a bad value is rejected in one line however it arrives — a CLI option, a
YAML pipeline file or a Python call. `cli/options.py` turns the same declarations into Typer options,
so no option is declared twice (the habit of kronfluence's `arguments.py` and litgpt's `args.py`).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from ifguide_cli.core.errors import IfguideError, check_range

# One precision vocabulary for every command. `auto` = bf16 on a CUDA device that supports it, else fp32.
Precision = Literal["auto", "fp32", "bf16", "fp16"]
Device = Literal["auto", "cpu", "cuda"]

_MISSING = dataclasses.MISSING
_INT_LIMIT = 2**63 - 1  # the largest whole number torch and numpy hold: beyond it a stage would overflow or run forever


def param(default: Any = _MISSING, help: str = "", *, flag: str | None = None, short: str | None = None,
          low: float | None = None, high: float | None = None, low_open: bool = False, high_open: bool = False,
          default_factory: Any = _MISSING, cli: bool = True, shown_default: str | None = None,
          complete: tuple[str, ...] | str | None = None) -> Any:
    """A config field: default, help, CLI flag (default `--field-name`) and valid range.

    `low`/`high` bound a number (inclusive unless `low_open`/`high_open`); `cli=False` keeps the field out
    of the generated CLI options; `shown_default` replaces the default in help (e.g. "by profile").
    `complete` is what the shell offers for a free-form value (`Literal` choices are offered anyway): a tuple
    of values (`("auto", "cpu", "cuda")`), or an artifact kind whose ids and names, with the registry names
    of that kind, are offered (`"datasets"`, `"checkpoints"`, `"classifiers"`).
    """
    meta = {"help": help, "flag": flag, "short": short, "low": low, "high": high, "low_open": low_open,
            "high_open": high_open, "cli": cli, "shown_default": shown_default, "complete": complete}
    if default_factory is not _MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def flag_of(f: dataclasses.Field) -> str:
    """The CLI flag of a field (`--max-tokens` for `max_tokens`), used in every message about it."""
    flag = f.metadata.get("flag") if f.metadata else None
    return (flag or "--" + f.name.replace("_", "-")).split("/")[0]


def field_hints(cls: type) -> dict[str, Any]:
    """The resolved type of each field (annotations are strings under `from __future__ import annotations`)."""
    return typing.get_type_hints(cls, include_extras=False)


def unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """(inner type, whether None is allowed) for `X | None` / `Optional[X]`."""
    args = typing.get_args(tp)
    if type(None) in args and len(args) == 2:
        return next(a for a in args if a is not type(None)), True
    return tp, False


def _bad(f: dataclasses.Field, what: str, value: Any) -> IfguideError:
    return IfguideError(f"{flag_of(f)} {what}; got {value!r}", exit_code=2)


def check_value(f: dataclasses.Field, tp: Any, value: Any) -> Any:
    """The validated (and normalised: int → float where a float is declared) value of one field."""
    inner, optional = unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise _bad(f, "needs a value", value)
    if typing.get_origin(inner) is Literal:
        choices = typing.get_args(inner)
        if value not in choices:
            raise _bad(f, "must be one of " + ", ".join(map(str, choices)), value)
        return value
    if inner is bool:
        if not isinstance(value, bool):
            raise _bad(f, "must be true or false", value)
        return value
    if inner is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise _bad(f, "must be a whole number", value)
        if abs(value) > _INT_LIMIT:
            raise _bad(f, f"must be at most {_INT_LIMIT:,} in size", value)
        return _check_range(f, value)
    if inner is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _bad(f, "must be a number", value)
        if not math.isfinite(value):
            raise _bad(f, "must be a finite number", value)
        return _check_range(f, float(value))
    if inner is str:
        if not isinstance(value, str):
            raise _bad(f, "must be a string", value)
        return value
    return value  # composite fields (tuples, nested configs) are checked by the config's own `check`


def _check_range(f: dataclasses.Field, value: float) -> float:
    m: Mapping[str, Any] = f.metadata or {}
    return check_range(flag_of(f), value, m.get("low"), m.get("high"), low_open=bool(m.get("low_open")),
                       high_open=bool(m.get("high_open")))


class Config:
    """Base of every stage config (a frozen dataclass): field-wise validation, then `check()`.

    Subclasses declare fields with `param` and put cross-field rules in `check`.
    """

    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]  # every subclass is a dataclass

    def __post_init__(self) -> None:
        hints = field_hints(type(self))
        for f in dataclasses.fields(self):
            value = check_value(f, hints[f.name], getattr(self, f.name))
            object.__setattr__(self, f.name, value)
        self.check()

    def check(self) -> None:
        """Rules that involve several fields (override)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "the configuration"):
        """Build from a mapping (YAML section, JSON): unknown keys are one error naming them and the known ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise IfguideError(f"unknown key(s) in {where}: {', '.join(unknown)}",
                               hint=f"known: {', '.join(sorted(known))}", exit_code=2)
        return cls(**values)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


def resolve_precision(requested: str, device: str, *, allowed: tuple[str, ...] = ("fp32", "bf16", "fp16"),
                      half_on_cpu: bool = False, what: str = "--precision") -> str:
    """The concrete precision of a run: `auto` → bf16 on a bf16-capable CUDA device, fp32 elsewhere.

    Half precision on a CPU is refused unless the stage allows it (`half_on_cpu`, e.g. influence scores,
    whose bf16 agreement tests run on CPU): for training it is slow there and changes the numerics.
    """
    import torch

    on_cuda = str(device).startswith("cuda")
    if requested == "auto":
        return "bf16" if on_cuda and torch.cuda.is_bf16_supported() and "bf16" in allowed else "fp32"
    if requested not in allowed:
        raise IfguideError(f"{what} {requested} is not supported here", hint=f"choose one of auto, {', '.join(allowed)}",
                           exit_code=2)
    if requested in ("bf16", "fp16") and not on_cuda and not half_on_cpu:
        raise IfguideError(f"{what} {requested} needs a CUDA GPU", hint=f"use {what} fp32 (the CPU default)", exit_code=2)
    return requested


def torch_dtype(precision: str):
    """The torch dtype of a concrete precision name."""
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
