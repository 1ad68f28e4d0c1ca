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
    import sys

    app(args=hoist_global_flags(sys.argv[1:]), prog_name="ifguide")
