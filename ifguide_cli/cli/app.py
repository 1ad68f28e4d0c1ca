"""The `ifguide` command: global options, and the command groups, each imported only when it runs.

`ifguide --help` lists the commands from the `COMMANDS` table without importing them (their modules pull
in the stage configs), so the help, the completion of command names and every other command start fast.
"""

from __future__ import annotations

import importlib
from typing import Optional

import typer
from typer.core import TyperCommand, TyperGroup

from ifguide_cli import __version__
from ifguide_cli.cli import common
from ifguide_cli.cli.commands import COMMANDS
from ifguide_cli.cli.errors import exit_code_for, guarded, print_error
from ifguide_cli.core import notes

HELP_OPTIONS = ["-h", "--help"]


class _Unloaded(TyperCommand):
    """A command listed (by name and summary) before its module is imported."""


class LazyGroup(TyperGroup):
    """The root group: commands from `COMMANDS` are imported when resolved (run, --help, completion of their
    options), and every command's flags are shown without a value placeholder (`--force`, not `--force <bool>`)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        for name, (_, summary) in COMMANDS.items():
            self.commands.setdefault(name, _Unloaded(name=name, help=summary, rich_markup_mode=self.rich_markup_mode))

    def resolve_command(self, ctx, args):
        name, command, rest = super().resolve_command(ctx, args)
        if isinstance(command, _Unloaded):
            command = self.commands[name] = self._load(name)
        if command is not None:
            _without_flag_placeholders(command, ctx)
        return name, command, rest

    def _load(self, name: str):
        module = importlib.import_module(f"{__package__}.{COMMANDS[name][0]}")
        holder = typer.Typer(rich_markup_mode=self.rich_markup_mode, pretty_exceptions_enable=False)
        module.register(holder)
        return typer.main.get_group(holder).commands[name]

    def invoke(self, ctx):
        """Every command runs inside the one error boundary (`cli/errors.py`)."""
        return guarded(lambda: super(LazyGroup, self).invoke(ctx))

    def get_params(self, ctx):
        params = super().get_params(ctx)
        _blank_flags(params)
        return params


def _without_flag_placeholders(command, ctx) -> None:
    """Typer shows a flag's type as its value (`--json <bool>`); a flag takes no value, so show none."""
    _blank_flags([*command.params, command.get_help_option(ctx)])
    for sub in getattr(command, "commands", {}).values():
        _without_flag_placeholders(sub, ctx)


def _blank_flags(params) -> None:
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""


app = typer.Typer(
    name="ifguide",
    cls=LazyGroup,
    help="IF-Guide: find the training tokens that make a language model toxic, and suppress them in training.\n\n"
    "Pipeline: factors → scores → mask → train/finetune → eval. Every result is an artifact in the workspace.",
    epilog="Start with `ifguide run --preset tiny`: the whole pipeline on a packaged tiny model, on a CPU in minutes; "
    "then `ifguide workspace ls`. `ifguide run --preset tiny --print-config > my.yaml` writes a pipeline file to edit "
    "and run (`ifguide run my.yaml`); `ifguide env` shows versions, devices and what is available offline. Every "
    "command takes -h and shows examples; global options also work after the command (`ifguide workspace ls --json`).",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": HELP_OPTIONS},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ifguide {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    ctx: typer.Context,
    workspace: Optional[str] = typer.Option(
        None, "--workspace", "-w", envvar="IFGUIDE_HOME", metavar="DIR",
        help="Workspace folder (default: IFGUIDE_HOME, else the user data dir)."
    ),
    json_output: bool = typer.Option(False, "--json", help="Print one machine-readable JSON object on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress or status lines."),
    no_truncate: bool = typer.Option(False, "--no-truncate", help="Plain output that never cuts ids, names or hashes "
                                                                    "(the default when stdout is not a terminal)."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    common.settings = common.Settings(workspace=workspace, json=json_output, quiet=quiet, debug=debug,
                                      no_truncate=no_truncate, stage=ctx.invoked_subcommand)
    notes.reset(common.show_warning)  # a new invocation: its notes are shown as they arrive and kept for --json


GLOBAL_FLAGS = ("--json", "--quiet", "-q", "--debug", "--no-truncate")


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

    from ifguide_cli.core.errors import on_sigint

    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not when the shell made us ignore it
        signal.signal(signal.SIGINT, on_sigint)
    common.safe_streams()
    try:
        command = typer.main.get_command(app)
        args = [common.utf8_argument(a) for a in sys.argv[1:]]
        code = command.main(args=hoist_global_flags(args), prog_name="ifguide", standalone_mode=False)
    except KeyboardInterrupt:
        code = _fatal("interrupted", 130)
    except Exception as exc:  # click's exceptions, duck-typed (no `import click`)
        code = _fatal_from(exc)
    sys.exit(code if isinstance(code, int) else 0)


def _fatal_from(exc: Exception) -> int:
    """The exit code of an exception that escaped click (its one line printed): click's own usage errors and
    aborts here, everything else through the error boundary's mapping."""
    name = type(exc).__name__
    if name == "NoArgsIsHelpError":  # the help was already printed
        return getattr(exc, "exit_code", 2)
    if name == "Abort":  # Ctrl-C or end of input at a prompt
        interrupted = isinstance(exc.__cause__, KeyboardInterrupt)
        return _fatal("interrupted" if interrupted else "aborted", 130 if interrupted else 1)
    code = getattr(exc, "exit_code", None)
    if hasattr(exc, "format_message") and isinstance(code, int):  # a usage error
        command_path = getattr(getattr(exc, "ctx", None), "command_path", None)
        hint = f" (see `{command_path} --help`)" if command_path else ""
        return _fatal(" ".join(str(exc.format_message()).split()) + hint, code)
    return exit_code_for(exc, debug=common.settings.debug)


def _fatal(message: str, code: int) -> int:
    print_error(message)
    return code
