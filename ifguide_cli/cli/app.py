"""The `ifguide` command: global options and the command groups."""

from __future__ import annotations

from typing import Optional

import typer

from .. import __version__
from ..core import notes
from . import common

app = typer.Typer(
    name="ifguide",
    help="IF-Guide: find the training tokens that make a language model toxic, and suppress them in training.\n\n"
    "Pipeline: factors → scores → mask → train/finetune → eval. Every result is an artifact in the workspace.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ifguide {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    workspace: Optional[str] = typer.Option(
        None, "--workspace", "-w", envvar="IFGUIDE_HOME", help="Workspace folder (default: IFGUIDE_HOME, else the user data dir)."
    ),
    json_output: bool = typer.Option(False, "--json", help="Print one machine-readable JSON object on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or status lines."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    common.settings = common.Settings(workspace=workspace, json=json_output, quiet=quiet, debug=debug)
    notes.reset(common.show_warning)  # a new invocation: its notes are shown as they arrive and kept for --json


def _register_commands() -> None:
    from . import eval as eval_cmd
    from . import factors, mask, rad, registry, report, run, scores, train, workspace

    for module in (factors, scores, mask, train, eval_cmd, rad, report, run, workspace, registry):
        module.register(app)


_register_commands()


GLOBAL_FLAGS = ("--json", "--quiet", "-q", "--debug")


def hoist_global_flags(argv: list[str]) -> list[str]:
    """Let `ifguide registry models --json` mean `ifguide --json registry models`.

    Global flags are defined on the root command; users put them at the end too.
    Nothing after a literal `--` is touched.
    """
    end = argv.index("--") if "--" in argv else len(argv)
    flags = [a for a in argv[:end] if a in GLOBAL_FLAGS]
    rest = [a for a in argv[:end] if a not in GLOBAL_FLAGS]
    return flags + rest + argv[end:]


def main() -> None:
    """The `ifguide` entry point: every way a command line can fail ends in one `error:` line and an exit code.

    Typer's own error display (a boxed usage message, a traceback for anything unexpected) is bypassed by running
    the command in click's non-standalone mode, where errors come back as exceptions: a usage error
    (`--vocab-size inf`) is one line and exit 2, Ctrl-C at any point is exit 130, and only a real bug is an
    "internal error" (the traceback with --debug).
    """
    import signal
    import sys

    from ..core.errors import on_sigint

    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not when the shell made us ignore it
        signal.signal(signal.SIGINT, on_sigint)
    try:
        command = typer.main.get_command(app)
        code = command.main(args=hoist_global_flags(sys.argv[1:]), prog_name="ifguide", standalone_mode=False)
    except KeyboardInterrupt:
        code = _fatal("interrupted", 130)
    except Exception as exc:  # click's exceptions, duck-typed (no `import click`)
        code = _fatal_from(exc)
    sys.exit(code if isinstance(code, int) else 0)


def _fatal_from(exc: Exception) -> int:
    """Print the one line for an exception that escaped the command; its exit code."""
    from ..core.errors import interrupted

    name = type(exc).__name__
    if name == "NoArgsIsHelpError":  # the help was already printed
        return getattr(exc, "exit_code", 2)
    if name == "Abort":  # Ctrl-C or end of input at a prompt
        return _fatal("interrupted" if isinstance(exc.__cause__, KeyboardInterrupt) else "aborted",
                      130 if isinstance(exc.__cause__, KeyboardInterrupt) else 1)
    if hasattr(exc, "format_message") and isinstance(getattr(exc, "exit_code", None), int):  # a usage error
        ctx = getattr(exc, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if getattr(ctx, "command_path", None) else ""
        return _fatal(" ".join(str(exc.format_message()).split()) + hint, exc.exit_code)
    if hasattr(exc, "one_line") and isinstance(getattr(exc, "exit_code", None), int):  # an IfguideError
        return _fatal(exc.one_line(), exc.exit_code)
    if interrupted():  # a Ctrl-C that a library turned into another error
        return _fatal("interrupted", 130)
    if common.settings.debug:
        raise exc
    return _fatal(f"internal error: {name}: {exc} — this is a bug: rerun with --debug and report the traceback", 1)


def _fatal(message: str, code: int) -> int:
    import sys

    line = "".join(c if c.isprintable() else " " for c in message)
    try:
        sys.stderr.write(f"error: {line}\n")
        sys.stderr.flush()
    except OSError:  # stderr closed: the exit code still tells
        pass
    return code
