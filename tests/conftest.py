"""Shared test fixtures: an isolated workspace, offline hub, and a CLI runner that parses --json output."""

from __future__ import annotations

import json
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def workspace_dir(tmp_path, monkeypatch):
    root = tmp_path / "ws"
    monkeypatch.setenv("IFGUIDE_HOME", str(root))
    return root


class CliResult:
    def __init__(self, result):
        self.result = result
        self.exit_code = result.exit_code
        self.stdout = result.stdout
        self.stderr = result.stderr
        self.output = result.output

    @property
    def json(self) -> dict:
        return json.loads(self.stdout)


@pytest.fixture
def cli(workspace_dir):
    """Invoke `ifguide --workspace WS ...args` in-process; returns stdout/stderr/exit_code and .json."""
    from typer.testing import CliRunner

    from ifguide_cli.cli.app import app

    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> CliResult:
        return CliResult(runner.invoke(app, ["--workspace", str(workspace_dir), *map(str, args)], input=input))

    return invoke
