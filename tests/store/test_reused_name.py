"""Issue 26: `--name` on a command whose artifact is reused names that artifact (it was silently dropped)."""

from __future__ import annotations

from ifguide_cli.core.store.workspace import Workspace


def _build(ctx):
    (ctx.staging / "x.bin").write_text("x")


def test_a_reused_artifact_takes_the_name_asked_for(tmp_path):
    ws = Workspace(tmp_path)
    first, _ = ws.create("masks", {"a": 1}, [], _build, name="first")
    again, reused = ws.create("masks", {"a": 1}, [], _build, name="second")
    assert reused and again.id == first.id and again.name == "second"
    assert ws.resolve("second").id == first.id and ws.get("masks", first.id).name == "second"
    kept, _ = ws.create("masks", {"a": 1}, [], _build)  # no --name: the name stays
    assert kept.name == "second"
