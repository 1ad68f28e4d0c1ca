"""Conventions shared by every command: global settings, output, progress, warnings, errors.

- `--json` prints exactly one JSON object on stdout; everything else goes to stderr.
- Warnings that core code records (`core.notes.warn`) are printed on stderr as they arrive and listed
  under `warnings` in the `--json` object, so a script sees what a terminal user sees.
- Errors are one line on stderr and a non-zero exit code; `--debug` shows the traceback.
- Progress goes to stderr (rank 0 only) and disappears with `--quiet`: bars in a terminal, plain lines at
  a steady cadence in a log file or a pipe (`core.progress.PlainReporter`), with or without `--json`.
- Plain output when stdout is not a terminal, or with `--no-truncate`: tables lose their borders and are never
  cut or wrapped, so ids, names, hub ids and hashes survive `| cat`, `| grep` and copy-paste.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ifguide_cli.cli.completion import artifacts as complete_artifacts  # noqa: F401  (for the commands' argument declarations)
from ifguide_cli.cli.completion import kinds as complete_kinds  # noqa: F401
from ifguide_cli.core import notes
from ifguide_cli.core.dist import is_main_process
from ifguide_cli.core.errors import IfguideError


@dataclass
class Settings:
    workspace: str | None = None
    json: bool = False
    quiet: bool = False
    debug: bool = False
    no_truncate: bool = False
    stage: str | None = None  # the label of progress lines: the command, or the pipeline stage that runs


settings = Settings()


def workspace():
    from ifguide_cli.core.store.workspace import Workspace

    return Workspace(settings.workspace)


def stderr_console():
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def stdout_console():
    """The console of a command's rendering: rich in a terminal, plain (never cut) in a pipe or with --no-truncate.

    Text is never wrapped by rich (`soft_wrap`): the terminal wraps long lines for display, and what is copied
    from it, or redirected into a file, is the whole line.
    """
    from rich.console import Console

    if plain_output():
        return _plain_console()
    return Console(highlight=False, soft_wrap=True)


def plain_output() -> bool:
    """Plain output (see the module docstring): stdout is not a terminal, or --no-truncate."""
    from rich.console import Console

    return settings.no_truncate or not Console().is_terminal


def _plain_console():
    from rich.console import Console
    from rich.table import Table

    class PlainConsole(Console):
        """Tables without borders at their natural width (never cut or wrapped; the title on a line of its own),
        and lines without trailing blanks."""

        def print(self, *objects, **kwargs):
            parts = [part for obj in objects for part in (_unboxed(obj) if isinstance(obj, Table) else [obj])]
            with self.capture() as captured:
                super().print(*parts, **kwargs)
            self.file.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))
            self.file.flush()

    return PlainConsole(highlight=False, soft_wrap=True, width=_UNLIMITED)


_UNLIMITED = 1 << 16  # columns: wider than anything a command prints


def _unboxed(table) -> list:
    """The table's title (if any) and the table itself, borderless, with columns that never wrap or cut."""
    title, table.title = table.title, None
    table.box, table.show_edge, table.pad_edge, table.expand, table.collapse_padding = None, False, False, False, False
    table.padding = (0, 1)
    for column in table.columns:
        column.no_wrap, column.overflow, column.max_width = True, "ignore", None
    return [title, table] if title else [table]


def info(message: str) -> None:
    """A status line on stderr (suppressed by --quiet and --json)."""
    if not (settings.quiet or settings.json):
        stderr_console().print(message)


def milestone(message: str) -> None:
    """A step of long work starting or ending (a pipeline stage): on stderr like progress, so also under --json
    (whose one object goes to stdout) — a log of `ifguide --json run … 2> run.log` shows where the run is.
    Not with --quiet, and only from rank 0."""
    if not settings.quiet and is_main_process():
        stderr_console().print(message)


def show_warning(message: str) -> None:
    """Print a note core code recorded (the `core.notes` listener): one yellow line on stderr.

    Not with --json (the notes go into the JSON object instead) or --quiet, and only from rank 0 of a
    distributed run (every rank records the same notes).
    """
    if settings.quiet or settings.json or not is_main_process():
        return
    from rich.markup import escape

    stderr_console().print(f"[yellow]warning:[/] {escape(message)}", soft_wrap=True)


def emit(payload: dict, render: Callable[[Any], None] | None = None) -> None:
    """Finish a command: the JSON object (with the invocation's `warnings`) with --json, else the rendering on stdout.

    A stdout that cannot be written (`> /dev/full`, a full disk) or is closed (`>&-`) is one line saying so."""
    if sys.stdout is None:
        raise IfguideError("stdout is closed: the result cannot be printed",
                           hint="run the command with stdout open (its work is done: a rerun reuses it)")
    try:
        if settings.json:
            from ifguide_cli.core.store.workspace import json_safe

            payload = {**payload, "warnings": [*payload.get("warnings", []), *notes.collected()]}
            sys.stdout.write(json.dumps(json_safe(payload), indent=2, default=str, allow_nan=False) + "\n")
            sys.stdout.flush()
        elif render is not None:
            render(stdout_console())
    except BrokenPipeError:
        raise
    except OSError as exc:
        silence_stdout()  # the interpreter's last flush would fail again
        raise IfguideError(f"cannot write the output to stdout ({exc.strerror or exc})",
                           hint="check where stdout goes (a full disk, a closed file)") from None


def silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush into the closed pipe is not an error too."""
    with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def kv_table(title: str, rows: dict[str, Any]):
    """A two-column summary table (values are shown as they are: no markup, never cut)."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in rows.items():
        table.add_row(escape(str(key)), escape(_fmt(value)))
    return table


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def fmt_metric(value: Any, digits: int = 3) -> str:
    """A metric in a table: fixed decimals, a dash when there is none."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def artifact_payload(art, reused: bool, **extra) -> dict:
    """The JSON every artifact-producing command prints: id, kind, path, reused, summary."""
    return {**art.ref(), "reused": reused, "parents": art.parents, "summary": art.summary, **extra}


def render_artifact(title: str, art, reused: bool, extra_rows: dict | None = None):
    """The default rendering of a created or reused artifact."""

    def render(console):
        rows = {"id": art.id, "path": str(art.path), "status": "reused" if reused else "created"}
        rows.update({k: v for k, v in art.summary.items() if not isinstance(v, (dict, list))})
        rows.update(extra_rows or {})
        console.print(kv_table(title, rows))

    return render


class _RichTask:
    def __init__(self, progress, task_id):
        self.progress, self.task_id = progress, task_id

    def advance(self, n: float = 1) -> None:
        self.progress.advance(self.task_id, n)

    def set(self, completed=None, total=None, info=None) -> None:
        kwargs = {}
        if completed is not None:
            kwargs["completed"] = completed
        if total is not None:
            kwargs["total"] = total
        if info is not None:
            kwargs["info"] = info
        self.progress.update(self.task_id, **kwargs)


class RichReporter:
    """Core `Reporter` drawn as rich progress bars on stderr."""

    @contextmanager
    def task(self, description: str, total: float | None = None) -> Iterator[_RichTask]:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        with Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=stderr_console(),
            transient=True,
        ) as progress:
            yield _RichTask(progress, progress.add_task(description, total=total, info=""))


def reporter():
    """The progress reporter for this invocation: bars in a terminal, plain lines in a log or pipe, none with --quiet.

    Only rank 0 of a distributed run reports. `IFGUIDE_PROGRESS_INTERVAL` (seconds, default 30) sets the longest
    gap between plain lines.
    """
    from ifguide_cli.core.progress import NULL, PlainReporter

    if settings.quiet or not is_main_process():
        return NULL
    console = stderr_console()
    if console.is_terminal and not console.is_dumb_terminal:
        return RichReporter()
    return PlainReporter(sys.stderr, label=settings.stage, interval=_progress_interval())


def _progress_interval() -> float:
    value = os.environ.get("IFGUIDE_PROGRESS_INTERVAL", "")
    try:
        return max(0.0, float(value)) if value.strip() else 30.0
    except ValueError:
        return 30.0


def set_stage(name: str) -> None:
    """Label the progress lines that follow with this stage (`run` calls it as each pipeline stage starts)."""
    settings.stage = name


def write_user_file(path: str, text: str, option: str = "--html"):
    """Write a file the user named (--html …) atomically; a bad path (a folder, a device, a path inside a stored
    artifact) is one clear line. Returns the resolved path."""
    from pathlib import Path

    from ifguide_cli.core.store.folders import check_output_file
    from ifguide_cli.core.store.workspace import atomic_write_text, default_root

    target = Path(path).expanduser()
    check_output_file(path, option, default_root(settings.workspace))
    atomic_write_text(target, text)
    return target.resolve()


def fail(message: str, hint: str | None = None, exit_code: int = 1):
    raise IfguideError(message, hint=hint, exit_code=exit_code)


def safe_streams() -> None:
    """Text the terminal's encoding cannot show (an ASCII-only locale, `LC_ALL=C`: an artifact named "café", the
    "—" of the help) is written as an escape instead of failing the command."""
    for stream in (sys.stdout, sys.stderr):
        encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
        if encoding and encoding != "utf8" and hasattr(stream, "reconfigure"):
            with contextlib.suppress(ValueError, OSError):
                stream.reconfigure(errors="backslashreplace")


def utf8_argument(arg: str) -> str:
    """An argument as the user typed it: under an ASCII-only locale Python keeps non-ASCII bytes of argv as lone
    surrogates (`--name café` → 'caf\\udcc3\\udca9'), which would be stored as such; they are UTF-8 text."""
    try:
        return os.fsencode(arg).decode("utf-8")
    except (UnicodeError, ValueError):
        return arg
