"""The CLI helpers every test module imports: one in-process runner and one definition of "a user error".

`invoke_cli(root, *args)` runs `ifguide --workspace ROOT ...` in-process (any test module, any workspace);
`assert_one_line_error` is the one definition of "a user error": non-zero exit, nothing on stdout, exactly one
`error:` line on stderr, no traceback. (A module of its own, not conftest.py: a folder's own conftest.py would
shadow a `from clikit import ...`.)
"""

from __future__ import annotations

import json
from pathlib import Path


class CliResult:
    """A finished in-process CLI call: exit code, stdout, stderr, and `.json` / `.data` for --json output."""

    def __init__(self, result):
        self.result = result
        self.exit_code = result.exit_code
        self.stdout = result.stdout
        self.stderr = result.stderr
        self.output = result.output

    @property
    def json(self) -> dict:
        return json.loads(self.stdout)

    @property
    def data(self) -> dict | None:
        """The --json payload of a successful call, else None."""
        return self.json if self.exit_code == 0 and self.stdout.strip() else None


def invoke_cli(root: str | Path, *args, input: str | None = None, env: dict | None = None) -> CliResult:
    """Run `ifguide --workspace ROOT *args` in-process."""
    from typer.testing import CliRunner

    from ifguide_cli.cli.app import app

    return CliResult(CliRunner().invoke(app, ["--workspace", str(root), *map(str, args)], input=input, env=env))


def assert_one_line_error(result, *needles: str, code: int | None = None, warnings: int = 0) -> str:
    """A user error: exit ≠ 0 (or exactly `code`), empty stdout, one `error:` line naming every needle.

    `warnings` is how many `warning:` lines a command correctly prints before it fails (e.g. a short run's
    coverage warning); they are checked and set aside, so an unexpected warning still fails the test."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert [line.startswith("warning:") for line in lines[:warnings]] == [True] * warnings, result.stderr
    lines = lines[warnings:]
    assert result.exit_code != 0 if code is None else result.exit_code == code, (result.exit_code, result.stderr)
    assert result.stdout.strip() == "", result.stdout
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]
