"""Shared test fixtures and helpers: an isolated workspace, offline hub, one CLI runner, one error check.

`invoke_cli(root, *args)` runs `ifguide --workspace ROOT ...` in-process (any test module, any workspace);
the `cli` fixture binds it to a fresh workspace; `assert_one_line_error` is the one definition of
"a user error": non-zero exit, nothing on stdout, exactly one `error:` line on stderr, no traceback.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("IFGUIDE_PROGRESS_INTERVAL", "inf")  # no plain progress lines in one-line-error tests
os.environ.setdefault("IFGUIDE_CACHE_DIR", tempfile.mkdtemp(prefix="ifguide-cache-"))  # file hashes: not the user's cache


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


def assert_one_line_error(result, *needles: str, code: int | None = None) -> str:
    """A user error: exit ≠ 0 (or exactly `code`), empty stdout, one `error:` line naming every needle."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code != 0 if code is None else result.exit_code == code, (result.exit_code, result.stderr)
    assert result.stdout.strip() == "", result.stdout
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` skip cleanly on a machine without CUDA (CI never has one)."""
    gpu_tests = [item for item in items if "gpu" in item.keywords]
    if not gpu_tests:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in gpu_tests:
        item.add_marker(skip)


@pytest.fixture
def workspace_dir(tmp_path, monkeypatch):
    root = tmp_path / "ws"
    monkeypatch.setenv("IFGUIDE_HOME", str(root))
    return root


@pytest.fixture
def cli(workspace_dir):
    """Invoke `ifguide --workspace WS ...args` in-process; returns stdout/stderr/exit_code and .json."""

    def invoke(*args, input: str | None = None, env: dict | None = None) -> CliResult:
        return invoke_cli(workspace_dir, *args, input=input, env=env)

    return invoke
