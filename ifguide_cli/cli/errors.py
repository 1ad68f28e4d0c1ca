"""The one error boundary of the command line: every exception that ends a command becomes one `error:` line on
stderr and an exit code, here and nowhere else (huggingface_hub's `cli/_errors.py` pattern).

The root group runs every command through `guarded` (so `ifguide ...` and in-process test runs behave alike);
`app.main` sends what escapes click itself (usage errors, an abort at a prompt) through `exit_code_for`. The
mapping, in order: click's own exceptions pass through to click; `IfguideError` is its one line and exit code;
a closed pipe (`ifguide workspace ls | head -1`) is a quiet exit 141; Ctrl-C (or an error a library made of it)
is exit 130; a failure of the machine (a full disk, a file that cannot be opened) is a user error naming the file
(`errors.from_environment`); anything else is an "internal error" that asks for a report (its traceback with
--debug). The command's read locks on artifacts are released however it ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TypeVar

import typer

from ifguide_cli.cli import common
from ifguide_cli.core.errors import IfguideError

T = TypeVar("T")
INTERRUPTED = "interrupted; finished artifacts are intact and an unfinished stage resumes when run again"
BROKEN_PIPE = 141


def is_click_error(exc: BaseException) -> bool:
    """A usage error, an abort or an exit of click's own (duck-typed: Typer bundles click, which we never import)."""
    if isinstance(exc, typer.Exit | typer.Abort):
        return True
    return hasattr(exc, "format_message") and isinstance(getattr(exc, "exit_code", None), int)


def guarded(invoke: Callable[[], T]) -> T:
    """Run a command; whatever it raises ends as one `error:` line and `typer.Exit(code)`."""
    from ifguide_cli.core.errors import stop_if_interrupted
    from ifguide_cli.core.store import locks

    try:
        result = invoke()
        stop_if_interrupted()  # a Ctrl-C swallowed on the way still ends the command as interrupted
        return result
    except KeyboardInterrupt:
        print_error(INTERRUPTED)
        raise typer.Exit(130) from None
    except Exception as exc:
        if is_click_error(exc):
            raise
        raise typer.Exit(exit_code_for(exc, debug=common.settings.debug)) from None
    finally:
        locks.release_all()


def exit_code_for(exc: Exception, *, debug: bool) -> int:
    """Print the one line for `exc` and return its exit code (re-raises it with --debug when it is not a user error)."""
    from ifguide_cli.core.errors import from_environment, interrupted

    if isinstance(exc, IfguideError):
        if debug:
            raise exc
        print_error(exc.one_line())
        return exc.exit_code
    if isinstance(exc, BrokenPipeError):
        common.silence_stdout()
        return BROKEN_PIPE
    if interrupted() and not debug:  # the error is a Ctrl-C that a library turned into another one
        print_error(INTERRUPTED)
        return 130
    if debug:
        raise exc
    known = from_environment(exc)
    if known is not None:
        print_error(known.one_line())
        return known.exit_code
    print_error(f"internal error: {type(exc).__name__}: {exc} — this is a bug: rerun with --debug and report the traceback")
    return 1


def print_error(line: str) -> None:
    """`error: …` on stderr: one line, whatever the message holds (markup, control characters, newlines)."""
    text = " ".join("".join(c if c.isprintable() else " " for c in line).split())
    with contextlib.suppress(OSError):  # stderr closed: the exit code still tells
        common.stderr_console().print(f"[bold red]error:[/] {_escape(text)}", soft_wrap=True)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
