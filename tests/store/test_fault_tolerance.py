"""The workspace survives every fault: damaged manifests are quarantined, a `--force` rebuild is never missing,
readers lock what they use, inputs are checked before use, doctor repairs, nothing is left behind, names are
escaped, files the tool writes are checked. The other faults the sweep found are tested beside the code they
concern (tests/cli/test_error_boundary.py, tests/core/test_yaml_limits.py, tests/data/test_unreadable_inputs.py,
…)."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
from pathlib import Path

import pytest
from clikit import assert_one_line_error

from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.store import folders, locks
from ifguide_cli.core.store.manifests import QUICK_SPAN
from ifguide_cli.core.store.workspace import Workspace


def write(text="x", name="data.txt"):
    def build(ctx):
        (ctx.staging / name).write_text(text)
        return {"n": len(text)}

    return build


@pytest.fixture
def chain(workspace_dir):
    """dataset → scores → mask, built directly (fast)."""
    ws = Workspace(workspace_dir)
    data, _ = ws.create("datasets", {"d": 1}, [], write("tokens"))
    scores, _ = ws.create("scores", {"s": 1}, [data.id], write("scores" * 10, "scores.safetensors"))
    mask, _ = ws.create("masks", {"m": 1}, [scores.id], write("mask", "mask.safetensors"), name="m")
    return ws, data, scores, mask


# ---- damaged manifests: quarantined, not fatal ------------------------------------------------------------------
BROKEN = {"truncated": b"{", "not-json": b"not json", "list": b"[]", "empty": b"", "binary": bytes(range(256)),
          "deep": b"[" * 100_000, "wrong-types": b'{"id": 5, "kind": ["masks"], "parents": "x", "files": 3}',
          "other-id": b'{"id": "aaaaaaaaaaaa", "kind": "masks", "parents": [], "files": {}}'}


@pytest.mark.parametrize("variant", sorted(BROKEN))
def test_a_damaged_manifest_is_listed_with_its_reason_and_the_rest_stays_usable(chain, cli, variant):
    _, data, scores, mask = chain
    (mask.path / "manifest.json").write_bytes(BROKEN[variant])
    listed = cli("--json", "workspace", "ls")
    assert listed.exit_code == 0, listed.stderr
    assert {a["id"] for a in listed.json["artifacts"]} == {data.id, scores.id}
    [damaged] = listed.json["damaged"]
    assert damaged["id"] == mask.id and "manifest.json" in damaged["reason"]
    text = cli("workspace", "ls")
    assert text.exit_code == 0 and mask.id in text.stdout and "damaged" in text.stdout
    assert cli("workspace", "show", scores.id).exit_code == 0
    assert_one_line_error(cli("workspace", "show", mask.id), mask.id, "damaged", "manifest.json")
    assert cli("workspace", "rm", mask.id).exit_code == 0  # a damaged artifact can be removed
    assert cli("--json", "workspace", "ls").json["damaged"] == []


def test_a_damaged_parent_is_named_when_used_and_shown_in_the_lineage(chain, cli):
    ws, _, scores, mask = chain
    (scores.path / "manifest.json").write_bytes(b"{")
    shown = cli("--json", "workspace", "show", mask.id)
    assert shown.exit_code == 0 and shown.json["lineage"]["parents"][0]["kind"] == "damaged"
    with pytest.raises(IfguideError, match=f"scores artifact {scores.id} is damaged"):
        ws.resolve(scores.id, "scores")
    with pytest.raises(IfguideError, match="damaged"):
        ws.create("masks", {"m": 2}, [scores.id], write())


def test_a_folder_without_manifest_and_junk_do_not_break_listing(chain, cli):
    ws, *_ = chain
    (ws.root / "masks" / "README.txt").write_text("stray")
    (ws.root / "masks" / "zzzzzzzzzzzz").mkdir()  # not an artifact id: the user's own folder, not listed
    (ws.root / "masks" / "0123456789ab").mkdir()  # named like one, without a manifest: listed as damaged
    (ws.root / "unknown").mkdir()
    listed = cli("--json", "workspace", "ls")
    assert listed.exit_code == 0 and [d["id"] for d in listed.json["damaged"]] == ["0123456789ab"]


# ---- --force rebuilds: the artifact is never missing ----------------------------------------------------------------
def test_force_rebuild_swaps_atomically_and_leaves_nothing(tmp_path):
    ws = Workspace(tmp_path)
    art, _ = ws.create("masks", {}, [], write("old"))
    new, _ = ws.create("masks", {}, [], write("new"), force=True)
    assert (new.path / "data.txt").read_text() == "new" and new.path == art.path
    assert list((tmp_path / ".staging").iterdir()) == [] and list((tmp_path / ".locks").iterdir()) == []
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "f").write_text("a")
    if folders.exchange(a, b):  # Linux: one renameat2(RENAME_EXCHANGE)
        assert (b / "f").read_text() == "a" and not (a / "f").exists()


def test_a_rebuild_killed_between_its_two_renames_is_restored_by_the_next_command(tmp_path, monkeypatch):
    """Where the atomic exchange is unavailable: old folder out, (kill), new folder in — the next read puts it back."""
    ws = Workspace(tmp_path)
    art, _ = ws.create("masks", {}, [], write("old"))
    monkeypatch.setattr(folders, "exchange", lambda a, b: False)
    real_replace = os.replace

    def killed_after_first(src, dst):
        real_replace(src, dst)
        if "replaced-" in str(dst):  # the old folder is out of the way, the new one not yet in
            raise KeyboardInterrupt  # stands for a kill -9 between the renames

    monkeypatch.setattr(os, "replace", killed_after_first)
    with pytest.raises(KeyboardInterrupt):
        ws.create("masks", {}, [], write("new"), force=True)
    monkeypatch.setattr(os, "replace", real_replace)
    assert not art.path.exists()
    locks.release_all()
    again = Workspace(tmp_path).get("masks", art.id)  # the next command
    assert again is not None and (again.path / "data.txt").read_text() == "old"


def _killed_rebuild(root: str) -> None:
    """A child process: a --force rebuild SIGKILLed between the two renames of the fallback swap."""
    ws = Workspace(root)
    folders.exchange = lambda a, b: False
    real = os.replace

    def replace(src, dst):
        real(src, dst)
        if "replaced-" in str(dst):
            os.kill(os.getpid(), signal.SIGKILL)

    os.replace = replace
    ws.create("masks", {}, [], write("new"), force=True)


@pytest.mark.slow
def test_kill_9_between_swap_renames_loses_nothing(tmp_path):
    ws = Workspace(tmp_path)
    art, _ = ws.create("masks", {}, [], write("old"))
    proc = mp.get_context("spawn").Process(target=_killed_rebuild, args=(str(tmp_path),))
    proc.start()
    proc.join(60)
    assert proc.exitcode == -signal.SIGKILL and not art.path.exists()
    assert (Workspace(tmp_path).get("masks", art.id).path / "data.txt").read_text() == "old"
    assert not any(p.name.startswith("replaced-") for p in (tmp_path / ".staging").iterdir())


# ---- readers lock what they use ---------------------------------------------------------------------------------------
def _reader(root: str, ref: str, ready, done) -> None:
    Workspace(root).resolve(ref, "masks")
    ready.set()
    done.wait(60)


def test_rm_refuses_while_a_stage_reads_the_artifact_and_names_the_process(chain, cli):
    ws, _, _, mask = chain
    ctx = mp.get_context("spawn")
    ready, done = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_reader, args=(str(ws.root), mask.id, ready, done))
    proc.start()
    try:
        assert ready.wait(60)
        line = assert_one_line_error(cli("workspace", "rm", mask.id), mask.id, "in use by")
        if Path("/proc/locks").exists():
            assert f"process {proc.pid}" in line
        with pytest.raises(IfguideError, match="in use by another process"):
            ws.create("masks", {"m": 1}, [mask.parents[0]], write(), force=True)  # no rebuild under a reader either
    finally:
        done.set()
        proc.join(30)
    assert cli("workspace", "rm", mask.id).exit_code == 0


def test_a_process_can_remove_what_it_reads_itself(chain):
    ws, _, _, mask = chain
    ws.resolve(mask.id, "masks")  # a shared lock held by this process
    assert [a.id for a in ws.remove(mask)] == [mask.id]
    locks.release_all()
    assert list((ws.root / ".locks").iterdir()) == []


def test_a_parent_removed_before_the_stage_locks_it_is_one_clear_error(chain):
    ws, _, scores, mask = chain
    ws.remove(mask)
    ws.remove(scores)
    with pytest.raises(IfguideError, match=f"parent artifact {scores.id} is not in workspace"):
        ws.create("masks", {"m": 9}, [scores.id], write())


def test_lock_files_are_deleted_by_their_last_holder(tmp_path):
    path = tmp_path / "x.lock"
    locks.acquire(path, exclusive=False)
    locks.acquire(path, exclusive=True)  # converted, not deadlocked
    locks.release(path, exclusive=True)
    assert path.exists()
    locks.release(path, exclusive=False)
    assert not path.exists()


# ---- inputs are checked when used -----------------------------------------------------------------------------------
def test_a_tampered_input_of_the_same_size_is_one_line_naming_the_file(chain):
    ws, _, scores, _ = chain
    path = scores.path / "scores.safetensors"
    stat = path.stat()
    path.write_text(path.read_text().upper())
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(IfguideError, match=r"scores\.safetensors was changed after it was written"):
        ws.resolve(scores.id, "scores")


def test_a_truncated_or_missing_input_file_is_named(chain):
    ws, data, _, mask = chain
    (data.path / "data.txt").write_text("tok")
    with pytest.raises(IfguideError, match=r"data\.txt has 3 bytes, its manifest says 6"):
        ws.resolve(data.id, "datasets")
    (mask.path / "mask.safetensors").unlink()
    with pytest.raises(IfguideError, match=r"mask\.safetensors is missing"):
        ws.get("masks", mask.id).file("mask.safetensors")


def test_the_quick_check_reads_the_ends_and_verify_reads_everything(tmp_path, monkeypatch):
    ws = Workspace(tmp_path)
    big = b"a" * (3 * QUICK_SPAN)
    art, _ = ws.create("scores", {}, [], lambda ctx: (ctx.staging / "big.bin").write_bytes(big) and None)
    path = art.path / "big.bin"
    path.write_bytes(big[: len(big) // 2] + b"b" + big[len(big) // 2 + 1:])  # one byte in the middle
    assert ws.resolve(art.id, "scores").id == art.id  # size and both ends unchanged: the quick check passes
    locks.release_all()
    monkeypatch.setenv("IFGUIDE_VERIFY", "1")
    with pytest.raises(IfguideError, match=r"big\.bin was changed"):
        Workspace(tmp_path).resolve(art.id, "scores")


# ---- doctor ---------------------------------------------------------------------------------------------------------------
def test_doctor_explains_repairs_and_removes_only_what_is_confirmed(chain, cli):
    ws, data, _, mask = chain
    folders.make_dir(ws.root / ".staging")
    os.replace(mask.path, ws.root / ".staging" / f"replaced-{mask.id}-99999")  # a lost --force swap
    (ws.root / ".staging" / "masks-0123456789ab").mkdir()  # empty: a rejected input's leftover
    (ws.root / ".staging" / "checkpoints-ba9876543210").mkdir()
    (ws.root / ".staging" / "checkpoints-ba9876543210" / "step-1").write_text("partial work")
    (ws.root / ".locks").mkdir(exist_ok=True)
    (ws.root / ".locks" / "aaaaaaaaaaaa.lock").write_bytes(b"\x00garbage")
    (ws.root / ".locks" / "dir.lock").mkdir()
    (data.path / "manifest.json").write_text("[]")
    report = cli("--json", "workspace", "doctor")
    assert report.exit_code == 0, report.stderr
    outcome = {f["problem"]: f["outcome"] for f in report.json["findings"]}
    assert outcome == {"lost-swap": "restored", "leftover": "deleted", "interrupted": "kept", "stale-lock": "deleted",
                       "damaged": "kept"}
    assert report.json["unresolved"] == 2
    assert ws.get("masks", mask.id) is not None and list((ws.root / ".locks").iterdir()) == []
    assert (ws.root / ".staging" / "checkpoints-ba9876543210").exists()
    removed = cli("--json", "workspace", "doctor", "--yes")
    assert removed.json["unresolved"] == 0 and {f["outcome"] for f in removed.json["findings"]} == {"removed"}
    assert not data.path.exists() and len(ws.list()) == 2  # the damaged dataset went; what was made from it stays
    assert {f["problem"] for f in cli("--json", "workspace", "doctor").json["findings"]} == {"missing-parent"}


def test_doctor_verify_finds_a_changed_file_the_quick_check_misses(tmp_path, cli, workspace_dir):
    ws = Workspace(workspace_dir)
    big = b"a" * (3 * QUICK_SPAN)
    art, _ = ws.create("scores", {}, [], lambda ctx: (ctx.staging / "big.bin").write_bytes(big) and None)
    (art.path / "big.bin").write_bytes(big[:-QUICK_SPAN - 1] + b"b" + big[-QUICK_SPAN:])
    assert cli("--json", "workspace", "doctor").json["findings"] == []
    [finding] = cli("--json", "workspace", "doctor", "--verify").json["findings"]
    assert finding["problem"] == "mismatch" and "big.bin" in finding["detail"] and finding["outcome"] == "kept"


# ---- nothing left behind -----------------------------------------------------------------------------------------------
def test_a_rejected_input_leaves_no_empty_staging_folder_and_no_lock(tmp_path):
    ws = Workspace(tmp_path)

    def rejects(ctx):
        (ctx.staging / "sub").mkdir()
        raise IfguideError("bad input")

    with pytest.raises(IfguideError):
        ws.create("masks", {}, [], rejects)
    assert list((tmp_path / ".staging").iterdir()) == [] and list((tmp_path / ".locks").iterdir()) == []

    def partial(ctx):
        (ctx.staging / "done-part").write_text("resumable")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ws.create("masks", {}, [], partial)
    [kept] = (tmp_path / ".staging").iterdir()  # work done is kept for the rerun to resume
    assert kept.name.startswith("masks-") and (kept / "done-part").is_file()


def test_report_name_is_honoured_when_the_report_is_reused(tmp_path):
    from ifguide_cli.core.report.build import build_report

    ws = Workspace(tmp_path)
    config = {"task": "fluency", "model": {"source": "registry", "location": "m"}, "defense": {"name": "none"}}
    ev, _ = ws.create("evals", config, [], lambda ctx: {"task": "fluency", "perplexity": 20.0, "lambada_accuracy": 0.3})
    first = build_report(ws, [ev]).artifact
    res = build_report(ws, [ev], name="renamed")
    again, reused = res.artifact, res.reused
    assert reused and again.id == first.id and again.name == "renamed"
    assert ws.resolve("renamed", "reports").id == first.id


# ---- the workspace path ---------------------------------------------------------------------------------------------------
def test_workspace_paths_that_cannot_be_one_are_one_line(tmp_path):
    from clikit import invoke_cli

    (tmp_path / "afile").write_text("x")
    assert_one_line_error(invoke_cli(tmp_path / "afile", "workspace", "ls"), "afile", "is a file", code=2)
    assert_one_line_error(invoke_cli("", "workspace", "ls"), "--workspace is empty", code=2)
    os.symlink("loop", tmp_path / "loop")
    assert_one_line_error(invoke_cli(tmp_path / "loop", "workspace", "ls"), "loop", code=2)
    assert_one_line_error(invoke_cli(tmp_path / "afile" / "ws", "train", "tiny", "--data", "tiny", "--max-steps", "1"), "afile", code=2)


# ---- names are printed literally --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["[/bold]", "[bold red]boom[/]", "\x1b[31mred\x1b]0;pwned\x07\x1b[2J", "two\nlines"])
def test_artifact_names_are_escaped_in_rich_output(workspace_dir, cli, name):
    ws = Workspace(workspace_dir)
    art, _ = ws.create("masks", {"n": name}, [], write(), name=name)
    for args in (("workspace", "ls"), ("workspace", "show", art.id)):
        res = cli(*args)
        assert res.exit_code == 0, res.stderr
        assert "\x1b" not in res.stdout and art.id in res.stdout


def test_json_output_of_damaged_listing_is_machine_readable(chain, cli):
    *_, mask = chain
    (mask.path / "manifest.json").write_bytes(b"\x1b[2J{")
    listed = cli("--json", "workspace", "ls")
    assert json.loads(listed.stdout)["damaged"][0]["id"] == mask.id


# ---- files the tool writes, and their integrity ----------------------------------------------------------------------------
def test_a_device_is_never_replaced_by_an_output_file(tmp_path):
    from ifguide_cli.core.store.workspace import atomic_write_text

    os.mkfifo(tmp_path / "out.html")
    with pytest.raises(IfguideError, match="not a regular file"):
        atomic_write_text(tmp_path / "out.html", "<html>")
    assert not (tmp_path / "out.html").is_file() and list(tmp_path.iterdir()) == [tmp_path / "out.html"]


@pytest.mark.parametrize("cut", [4, 20, -1])
def test_file_integrity_finds_a_cut_safetensors_file(tmp_path, cut):
    import numpy as np

    from ifguide_cli.core.masking import save_safetensors
    from ifguide_cli.core.store.file_integrity import damage

    path = tmp_path / "model.safetensors"
    save_safetensors(path, {"w": np.ones(100, dtype=np.float32)})
    assert damage(path) is None
    os.truncate(path, path.stat().st_size + cut if cut < 0 else cut)
    assert damage(path) is not None


def test_log_file_is_checked_before_any_work(tmp_path):
    from ifguide_cli.core.store.folders import check_output_file

    check_output_file(str(tmp_path / "log.jsonl"), "--log-file")  # a new file in an existing folder
    assert not (tmp_path / "log.jsonl").exists()  # nothing created by the check
    for bad, why in ((tmp_path / "no" / "log.jsonl", "does not exist"), (tmp_path, "is a folder")):
        with pytest.raises(IfguideError, match=f"--log-file .*{why}"):
            check_output_file(str(bad), "--log-file")
