"""`python -m ifguide_cli` (what `torchrun -m ifguide_cli ...` runs), and the `ifguide` script's entry point."""

import contextlib
import sys


def main() -> None:
    """Import the command line, then run it. Importing takes a moment (typer, rich): a Ctrl-C in it is the same clean
    exit 130 as a Ctrl-C during the command (which `cli.app.main` handles), never a traceback."""
    try:
        from ifguide_cli.cli.app import main as run

        run()
    except KeyboardInterrupt:
        with contextlib.suppress(OSError):
            sys.stderr.write("error: interrupted\n")
        sys.exit(130)


if __name__ == "__main__":
    main()
