"""Shared test fixtures: an isolated workspace, offline hub, and `cli`, the in-process runner of clikit.py bound to a
fresh workspace. The helpers test modules import (`invoke_cli`, `assert_one_line_error`) live in clikit.py."""

from __future__ import annotations

import os
import tempfile

import pytest
from clikit import CliResult, assert_one_line_error, invoke_cli  # noqa: F401 (old `from conftest import` still works)

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("IFGUIDE_PROGRESS_INTERVAL", "inf")  # no plain progress lines in one-line-error tests
os.environ.setdefault("IFGUIDE_CACHE_DIR", tempfile.mkdtemp(prefix="ifguide-cache-"))  # file hashes: not the user's cache


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
