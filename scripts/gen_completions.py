"""Generate the shell completion scripts in completions/ from the app (or --check that they are current)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

SHELLS = {"bash": "ifguide.bash", "zsh": "_ifguide", "fish": "ifguide.fish"}
OUT = Path(__file__).resolve().parent.parent / "completions"


def render(shell: str) -> str:
    os.environ["_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION"] = "1"
    from typer.testing import CliRunner

    from ifguide_cli.cli.app import app

    result = CliRunner().invoke(app, ["--show-completion", shell], prog_name="ifguide")
    if result.exit_code != 0:
        raise SystemExit(f"could not render {shell} completion: {result.output}")
    return result.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if a committed script differs from a fresh render")
    args = parser.parse_args(argv)
    stale = []
    for shell, name in SHELLS.items():
        text, path = render(shell), OUT / name
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(str(path))
        else:
            OUT.mkdir(exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print("stale completion scripts (run python scripts/gen_completions.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
