"""Fixtures of the data tests: a fresh workspace and the packaged tiny model's reference."""

from __future__ import annotations

import pytest


@pytest.fixture
def ws(tmp_path):
    from ifguide_cli.core.store.workspace import Workspace

    return Workspace(tmp_path / "ws")


@pytest.fixture
def mref():
    from ifguide_cli.core.models import resolve_model

    return resolve_model("tiny")
