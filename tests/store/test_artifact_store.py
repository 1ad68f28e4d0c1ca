"""The artifact store: deterministic ids, reuse, atomic publish, locks, references, lineage."""

from __future__ import annotations

import json
import multiprocessing as mp
import time

import pytest

from ifguide_cli.core.errors import ArtifactNotFound, IfguideError, WrongArtifactKind
from ifguide_cli.core.store.workspace import Workspace, artifact_id


def write(text="x", summary=None):
    def build(ctx):
        (ctx.staging / "data.txt").write_text(text)
        return summary or {"n": len(text)}

    return build


def test_id_is_deterministic_and_depends_on_config_and_parents():
    a = artifact_id("scores", {"p": 1, "q": [1, 2]}, ["b", "a"])
    assert a == artifact_id("scores", {"q": [1, 2], "p": 1}, ["a", "b"])  # key and parent order do not matter
    assert a != artifact_id("scores", {"p": 2, "q": [1, 2]}, ["a", "b"])
    assert a != artifact_id("scores", {"p": 1, "q": [1, 2]}, ["a"])
    assert a != artifact_id("masks", {"p": 1, "q": [1, 2]}, ["a", "b"])


def test_create_writes_manifest_with_files_and_versions(tmp_path):
    ws = Workspace(tmp_path)
    art, reused = ws.create("factors", {"strategy": "ekfac"}, [], write("hello", {"tokens": 5}), name="f")
    assert not reused
    manifest = json.loads((art.path / "manifest.json").read_text())
    assert manifest["id"] == art.id and manifest["kind"] == "factors" and manifest["name"] == "f"
    assert manifest["config"] == {"strategy": "ekfac"}
    assert manifest["files"]["data.txt"]["size"] == 5
    assert len(manifest["files"]["data.txt"]["sha256"]) == 64
    assert manifest["summary"] == {"tokens": 5}
    assert "torch" in manifest["versions"] and "python" in manifest["versions"]
    assert manifest["timings"]["total"] >= 0
    assert ws.verify(art) == []
    (art.path / "data.txt").write_text("tampered")
    assert ws.verify(art) == ["data.txt"]


def test_identical_stage_is_reused_unless_forced(tmp_path):
    ws = Workspace(tmp_path)
    calls = []

    def build(ctx):
        calls.append(1)
        (ctx.staging / "f").write_text(str(len(calls)))

    first, _ = ws.create("masks", {"t": 0.99}, [], build)
    again, reused = ws.create("masks", {"t": 0.99}, [], build)
    assert reused and again.id == first.id and len(calls) == 1
    forced, reused = ws.create("masks", {"t": 0.99}, [], build, force=True)
    assert not reused and forced.id == first.id and len(calls) == 2
    assert (forced.path / "f").read_text() == "2"


def test_interrupted_build_leaves_nothing_published_and_resumes_from_staging(tmp_path):
    ws = Workspace(tmp_path)
    progress = []

    def flaky(ctx):
        part = ctx.staging / "part1"
        if part.exists():
            progress.append("resumed")
        else:
            part.write_text("done")
            raise KeyboardInterrupt  # killed mid-way
        (ctx.staging / "part2").write_text("done")

    with pytest.raises(KeyboardInterrupt):
        ws.create("scores", {"a": 1}, [], flaky)
    assert ws.list("scores") == []  # nothing half-written is visible
    art, _ = ws.create("scores", {"a": 1}, [], flaky)
    assert progress == ["resumed"]
    assert sorted(art.manifest["files"]) == ["part1", "part2"]


def test_force_keeps_old_artifact_when_rebuild_fails(tmp_path):
    ws = Workspace(tmp_path)
    art, _ = ws.create("evals", {}, [], write("old"))

    def broken(ctx):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        ws.create("evals", {}, [], broken, force=True)
    assert (ws.get("evals", art.id).path / "data.txt").read_text() == "old"


def _hold_lock(root, started, release):
    ws = Workspace(root)

    def slow(ctx):
        started.set()
        release.wait(20)

    ws.create("checkpoints", {"s": 1}, [], slow)


def test_second_writer_of_same_artifact_is_refused(tmp_path):
    ctx = mp.get_context("spawn")
    started, release = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_hold_lock, args=(str(tmp_path), started, release))
    proc.start()
    try:
        assert started.wait(60)
        with pytest.raises(IfguideError, match="being written by another process"):
            Workspace(tmp_path).create("checkpoints", {"s": 1}, [], write())
    finally:
        release.set()
        proc.join(30)
    assert Workspace(tmp_path).list("checkpoints")  # the first writer finished normally


def test_references_id_prefix_name_latest_and_wrong_kind(tmp_path):
    ws = Workspace(tmp_path)
    a, _ = ws.create("factors", {"i": 1}, [], write(), name="base")
    time.sleep(0.01)
    b, _ = ws.create("factors", {"i": 2}, [], write())
    s, _ = ws.create("scores", {"i": 3}, [a.id], write())
    assert ws.resolve(a.id).id == a.id
    assert ws.resolve(a.id[:6], "factors").id == a.id
    assert ws.resolve("base", "factors").id == a.id
    assert ws.resolve("latest", "factors").id == b.id
    assert ws.resolve("latest").id == s.id
    assert ws.resolve("latest:factors").id == b.id
    with pytest.raises(WrongArtifactKind, match="is a factors artifact, not a scores artifact"):
        ws.resolve("base", "scores")
    with pytest.raises(ArtifactNotFound):
        ws.resolve("nope", "scores")
    with pytest.raises(ArtifactNotFound):
        ws.resolve("latest", "masks")


def test_latest_is_the_newest_of_every_wanted_kind(tmp_path):
    ws = Workspace(tmp_path)
    s, _ = ws.create("scores", {"i": 1}, [], write())
    time.sleep(0.01)
    d, _ = ws.create("datasets", {"i": 2}, [], write())  # newer, though `datasets` comes first in KINDS
    assert ws.resolve("latest").id == d.id
    assert ws.resolve("latest", ("scores", "datasets")).id == d.id
    assert ws.resolve("latest:score").id == ws.resolve("latest:scores").id == s.id  # the kind, singular or plural
    assert [a.id for a in ws.list("score")] == [s.id]
    with pytest.raises(WrongArtifactKind, match="'latest:scores' names a scores artifact, not a mask artifact"):
        ws.resolve("latest:scores", "masks")
    with pytest.raises(ArtifactNotFound, match="no mask artifact in workspace"):
        ws.resolve("latest:mask")
    with pytest.raises(IfguideError, match="unknown artifact kind 'mystery'"):
        ws.resolve("latest:mystery")


def test_a_reused_name_means_the_newest_and_a_prefix_must_be_unique(tmp_path):
    ws = Workspace(tmp_path)
    seen = {}  # two configs whose ids share their first 4 hex digits (ids are deterministic: found the same way each run)
    for i in range(5000):
        aid = artifact_id("masks", {"i": i}, [])
        if aid[:4] in seen:
            pair = (seen[aid[:4]], i)
            break
        seen[aid[:4]] = i
    older, _ = ws.create("masks", {"i": pair[0]}, [], write(), name="m")
    time.sleep(0.01)
    newer, _ = ws.create("masks", {"i": pair[1]}, [], write(), name="m")
    assert ws.resolve("m", "masks").id == newer.id
    with pytest.raises(IfguideError, match=f"'{older.id[:4]}' matches 2 artifacts"):
        ws.resolve(older.id[:4])
    assert ws.resolve(older.id[:8]).id == older.id
    with pytest.raises(ArtifactNotFound):
        ws.resolve(older.id[:3])  # shorter than 4 characters is no prefix


def test_lineage_children_and_remove(tmp_path):
    ws = Workspace(tmp_path)
    d, _ = ws.create("datasets", {}, [], write())
    f, _ = ws.create("factors", {}, [d.id], write())
    s, _ = ws.create("scores", {}, [f.id, d.id], write())
    tree = ws.lineage(s)
    assert [p["id"] for p in tree["parents"]] == [f.id, d.id]
    assert tree["parents"][0]["parents"][0]["id"] == d.id
    assert {c.id for c in ws.children(d)} == {f.id, s.id}
    with pytest.raises(IfguideError, match="depend on"):
        ws.remove(f)
    removed = ws.remove(f, recursive=True)
    assert {a.id for a in removed} == {f.id, s.id}
    assert ws.list("scores") == [] and ws.get("datasets", d.id) is not None


def test_missing_parent_is_refused(tmp_path):
    with pytest.raises(ArtifactNotFound):
        Workspace(tmp_path).create("scores", {}, ["deadbeef0000"], write())


def test_root_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("IFGUIDE_HOME", str(tmp_path / "env"))
    assert Workspace().root == tmp_path / "env"
    assert Workspace(tmp_path / "flag").root == tmp_path / "flag"
    monkeypatch.delenv("IFGUIDE_HOME")
    import platformdirs

    assert Workspace().root == platformdirs.user_data_path("ifguide")
