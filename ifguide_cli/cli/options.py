"""CLI options generated from the typed stage configs, and the options many commands share.

A command declares its own arguments (MODEL, --name, --force …) and names the config class whose
fields become its remaining options: `@config_options(MaskConfig)`. Each field's flag, help, default
and choices come from its `param(...)` declaration in core, so an option is declared exactly once and
validated exactly once (by the config's `__post_init__`). Only Typer's public API is used: the
generated parameters are ordinary `Annotated[type, typer.Option(...)]` parameters of the command's
signature.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal, Optional

import typer

from ifguide_cli.core.config import field_hints, flag_of, unwrap_optional

# the default of a command's config parameter: `config_options` always passes the built config, never this
FILLED: Any = None


def _option_for(f: dataclasses.Field, tp: Any, *, overrides_only: bool) -> tuple[Any, Any]:
    """(annotation, default) of the Typer parameter for one config field.

    Choices (`Literal`) reach Typer as plain strings, listed in the help and offered by shell completion, so
    a bad choice is rejected by the config in one line like every other bad value; `tuple[str, ...]`
    fields become repeatable options.
    """
    meta: Mapping[str, Any] = f.metadata or {}
    inner, _ = unwrap_optional(tp)
    default = None if overrides_only else _field_default(f)
    shown = meta.get("shown_default")
    if shown is None and _field_default(f) is not None and (overrides_only or _is_choice(inner)):
        shown = _display(_field_default(f))
    flag = meta.get("flag") or "--" + f.name.replace("_", "-")
    names = [flag] + ([meta["short"]] if meta.get("short") else [])
    help_text = meta.get("help", "")
    extra: dict[str, Any] = {}
    if _is_choice(inner):
        choices = [str(c) for c in typing.get_args(inner)]
        if not all(c in help_text for c in choices):  # unless the help already explains each choice
            help_text += f" Choices: {', '.join(choices)}."
        extra["autocompletion"] = _values(choices)
        inner = str
    elif meta.get("complete"):
        extra["autocompletion"] = _completer(meta["complete"])
    elif _is_repeatable(inner):
        inner, default = list[str], (None if overrides_only or not default else list(default))
    help_text += f" \\[default: {shown}]" if shown is not None else ""
    option = typer.Option(*names, help=help_text, show_default=shown is None and not overrides_only, **extra)
    annotation = Optional[inner] if (overrides_only or default is None) else inner
    return Annotated[annotation, option], default


def _values(values) -> Callable[[str], list[str]]:
    return lambda incomplete: [v for v in values if v.startswith(incomplete)]


def _completer(complete: tuple[str, ...] | str) -> Callable:
    """The shell completion a field's `complete=` asks for: fixed values, or an artifact kind's ids and names."""
    if isinstance(complete, str):
        from ifguide_cli.cli.completion import REGISTRY_OF, artifacts

        return artifacts(complete, registry=REGISTRY_OF.get(complete))
    return _values(complete)


def _is_choice(tp: Any) -> bool:
    return typing.get_origin(tp) is Literal


def _is_repeatable(tp: Any) -> bool:
    return typing.get_origin(tp) is tuple


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _display(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _from_cli(value: Any) -> Any:
    """A repeatable option arrives as a list; configs hold tuples (hashable, frozen)."""
    return tuple(value) if isinstance(value, list) else value


def cli_fields(config_cls: type, exclude: tuple[str, ...] = ()) -> list[dataclasses.Field]:
    """The fields of a config that are CLI options."""
    return [f for f in dataclasses.fields(config_cls) if f.metadata.get("cli", True) and f.name not in exclude]


def config_options(config_cls: type, *, into: str = "config", overrides_only: bool = False,
                   exclude: tuple[str, ...] = ()) -> Callable:
    """Add one option per field of `config_cls` to a command and pass them on as one value.

    The command's parameter named `into` receives the built config (validated), or — with
    `overrides_only` — a dict of just the options the user gave (for commands that layer profile
    defaults and a config file under the options, like `train`). Fields named in `exclude` stay out.
    """
    fields = cli_fields(config_cls, exclude)
    hints = field_hints(config_cls)

    def decorate(fn: Callable) -> Callable:
        sig = inspect.signature(fn, eval_str=True)
        own = [p for name, p in sig.parameters.items() if name != into]
        generated = []
        for f in fields:
            annotation, default = _option_for(f, hints[f.name], overrides_only=overrides_only)
            generated.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                               annotation=annotation))

        @functools.wraps(fn)
        def command(*args, **kwargs):
            values = {f.name: _from_cli(kwargs.pop(f.name)) for f in fields}
            if overrides_only:
                kwargs[into] = {k: v for k, v in values.items() if v is not None}
            else:
                kwargs[into] = config_cls(**values)
            return fn(*args, **kwargs)

        signed: Any = command  # functools.wraps' result type has no `__signature__`, which Typer reads (inspect)
        signed.__signature__ = sig.replace(parameters=own + generated)
        return command

    return decorate


def option_flag(config_cls: type, name: str) -> str:
    """The CLI flag of one config field (for messages that point at an option)."""
    return flag_of(next(f for f in dataclasses.fields(config_cls) if f.name == name))


# ---- options shared by many commands (declared once, as huggingface_hub's cli/_cli_utils.py does) --------
NameOpt = Annotated[Optional[str], typer.Option("--name", help="A name for the artifact (usable wherever an id is).")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Recompute even if an identical artifact exists.")]
DataOpt = Annotated[Optional[str], typer.Option(
    "--data", "-d", help="Dataset: registry name, local .jsonl/.txt/.parquet/.csv file, hub id, or dataset artifact.")]
