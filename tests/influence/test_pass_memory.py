"""How an influence pass keeps its host memory bounded: large blocks get their own mappings (a freed tensor leaves
resident memory at once) and each batch's freed heap pages go back to the OS. Mechanisms only, never RSS figures."""

from __future__ import annotations

import platform

import pytest
import torch

from ifguide_cli.core import dist, heap
from ifguide_cli.core.influence import engine as engine_module
from ifguide_cli.core.influence import find_family, load_families, select_modules
from ifguide_cli.core.models import load_model, resolve_model

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt/malloc_trim are glibc's")


@glibc_only
def test_large_allocations_get_their_own_mapping_on_glibc(monkeypatch):
    monkeypatch.delenv(heap.USER_THRESHOLD, raising=False)
    assert heap.map_large_allocations()  # mallopt accepted the fixed threshold (it refuses values above 32 MiB)
    assert heap.LARGE_ALLOCATION <= 1 << 25


def test_a_threshold_the_user_set_is_kept(monkeypatch):
    monkeypatch.setenv(heap.USER_THRESHOLD, str(1 << 25))
    assert not heap.map_large_allocations()


def test_an_influence_engine_fixes_the_mapping_threshold_before_any_pass(monkeypatch):
    calls = []
    monkeypatch.setattr(engine_module, "map_large_allocations", lambda: calls.append("mapped") or True)
    torch.manual_seed(0)
    model = load_model(resolve_model("tiny"))
    modules = select_modules(model, find_family("gpt_neox", load_families()))
    engine_module.InfluenceEngine(model, modules, dist.setup("cpu"), "fp32")
    assert calls == ["mapped"]


def test_every_training_batch_returns_the_freed_heap(monkeypatch):
    released = []
    monkeypatch.setattr(engine_module, "release_free_memory", lambda: released.append(1))
    progress = engine_module._Progress()
    for _ in range(3):
        progress(8)
    assert len(released) == 3
