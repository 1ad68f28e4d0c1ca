"""Issue 26: doctor and rm touch only artifact folders, name everything they remove first, and keep intact artifacts
unless told otherwise; output files never land inside stored artifacts; an artifact linked to another disk is one
like any other."""

from __future__ import annotations

import os
import shutil

import pytest
from clikit import assert_one_line_error

from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.store import folders, locks
from ifguide_cli.core.store.workspace import Workspace


def write(text="x", name="data.txt"):
    def build(ctx):
        (ctx.staging / name).write_text(text)

    return build


@pytest.fixture
def family(workspace_dir):
    """dataset → checkpoint → factors, and the checkpoint → mask: a damaged dataset has three intact descendants."""
    ws = Workspace(workspace_dir)
    data, _ = ws.create("datasets", {"d": 1}, [], write("tokens", "texts.bin"))
    ckpt, _ = ws.create("checkpoints", {"c": 1}, [data.id], write("weights"))
    factors, _ = ws.create("factors", {"f": 1}, [ckpt.id], write("f"))
    mask, _ = ws.create("masks", {"m": 1}, [ckpt.id], write("m"))
    return ws, data, [ckpt, factors, mask]


def test_doctor_yes_removes_a_damaged_artifact_alone_and_names_the_descendants_it_keeps(family, cli):
    ws, data, kids = family
    with open(data.path / "texts.bin", "ab") as fh:
        fh.write(b"!")  # one byte appended
    report = cli("--json", "workspace", "doctor", "--yes")
    [finding] = [f for f in report.json["findings"] if f["problem"] == "mismatch"]
    assert finding["outcome"] == "removed" and finding["removes"] == [f"dataset {data.id}"]
    assert all(k.id in finding["detail"] for k in kids) and "kept" in finding["detail"]
    assert not data.path.exists() and {a.id for a in ws.list()} == {k.id for k in kids}


def test_doctor_recursive_lists_every_descendant_before_removing_them(family, cli):
    ws, data, kids = family
    (data.path / "texts.bin").write_text("tokenZ")
    report = cli("--json", "workspace", "doctor", "--yes", "--recursive")
    [finding] = [f for f in report.json["findings"] if f["problem"] == "mismatch"]
    assert finding["removes"][0] == f"dataset {data.id}"
    assert {r.split()[1] for r in finding["removes"][1:]} == {k.id for k in kids}
    assert ws.list() == []


def test_doctor_and_rm_leave_folders_that_are_not_artifacts_alone(family, cli):
    ws, _, _ = family
    mine = [ws.root / "checkpoints" / "my-run-1", ws.root / "datasets" / "raw", ws.root / ".staging" / "notes"]
    for folder in mine:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "keep.txt").write_text("mine")
    lookalike = ws.root / "masks" / "0123456789ab"  # named like an artifact, no manifest
    lookalike.mkdir()
    (lookalike / "keep.txt").write_text("mine")
    report = cli("--json", "workspace", "doctor", "--yes")
    assert report.exit_code == 0, report.stderr
    assert all((folder / "keep.txt").exists() for folder in [*mine, lookalike])
    ours = [f for f in report.json["findings"] if f["problem"] != "stale-lock"]
    assert {f["problem"] for f in ours} == {"foreign", "damaged"} and {f["outcome"] for f in ours} == {"explained"}
    assert_one_line_error(cli("workspace", "rm", "raw"), "raw")
    assert_one_line_error(cli("workspace", "rm", "0123456789ab"), "0123456789ab", "manifest.json")
    assert (lookalike / "keep.txt").exists() and (ws.root / "datasets" / "raw" / "keep.txt").exists()


def test_rm_names_every_artifact_before_removing(family, cli):
    ws, data, kids = family
    out = cli("workspace", "rm", data.id, "--recursive")
    assert out.exit_code == 0, out.stderr
    before, after = out.stderr, out.stdout
    assert "removing" in before and all(a.id in before and a.id in after for a in [data, *kids])
    assert ws.list() == []


def test_an_artifact_folder_linked_to_another_disk_lists_resolves_and_removes(family, cli, tmp_path):
    ws, _, (ckpt, _, mask) = family
    elsewhere = tmp_path / "other-disk" / mask.id
    elsewhere.parent.mkdir()
    shutil.move(str(mask.path), elsewhere)
    os.symlink(elsewhere, mask.path)
    listed = cli("--json", "workspace", "ls").json
    assert mask.id in {a["id"] for a in listed["artifacts"]} and listed["damaged"] == []
    assert ws.resolve(mask.id, "masks").id == mask.id
    locks.release_all()
    assert cli("--json", "workspace", "doctor").json["findings"] == []
    _, reused = ws.create("masks", {"m": 1}, [ckpt.id], write("m"))
    assert reused
    assert cli("workspace", "rm", mask.id).exit_code == 0
    assert not os.path.lexists(mask.path) and not elsewhere.exists()
    assert list((ws.root / ".staging").iterdir()) == []


def test_a_dead_link_is_listed_damaged_and_never_removed(family, cli, tmp_path):
    _, _, (_, _, mask) = family
    shutil.rmtree(mask.path)
    os.symlink(tmp_path / "unmounted" / mask.id, mask.path)
    [damaged] = cli("--json", "workspace", "ls").json["damaged"]
    assert damaged["id"] == mask.id and "symbolic link" in damaged["reason"]
    cli("workspace", "doctor", "--yes")
    assert os.path.islink(mask.path)


@pytest.mark.parametrize("where", ["masks/{id}/mask.safetensors", "masks/{id}/new.html", "masks/{id}",
                                   ".staging/x.html", ".locks/x.lock"])
def test_output_files_inside_stored_artifacts_are_refused(family, where):
    ws, _, (_, _, mask) = family
    target = ws.root / where.format(id=mask.id)
    with pytest.raises(IfguideError, match="inside") as err:
        folders.check_output_file(str(target), "--html", ws.root)
    assert err.value.exit_code == 2 and "--html" in err.value.message


def test_output_inside_a_linked_artifact_folder_is_refused_through_its_real_path(family, tmp_path):
    ws, _, (_, _, mask) = family
    elsewhere = tmp_path / "disk2" / mask.id
    elsewhere.parent.mkdir()
    shutil.move(str(mask.path), elsewhere)
    os.symlink(elsewhere, mask.path)
    with pytest.raises(IfguideError, match=f"masks/{mask.id}"):
        folders.check_output_file(str(elsewhere / "train_log.jsonl"), "--log-file", ws.root)


def test_output_files_outside_artifacts_and_the_users_own_folders_are_fine(family, tmp_path):
    ws, _, _ = family
    (ws.root / "checkpoints" / "my-run").mkdir()
    folders.check_output_file(str(ws.root / "checkpoints" / "my-run" / "log.jsonl"), "--log-file", ws.root)
    folders.check_output_file(str(tmp_path / "report.html"), "--html", ws.root)


def test_a_fifo_as_an_output_file_is_refused_before_any_work(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(IfguideError, match="not a regular file"):
        folders.check_output_file(str(fifo), "--log-file")
