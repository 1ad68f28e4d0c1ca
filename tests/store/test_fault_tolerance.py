"""Issue 14: the workspace survives every fault and bad input.

One test (or more) per failure the fault sweep found: damaged manifests are quarantined, a `--force` rebuild is
never missing, readers lock what they use, inputs are checked before use, user input errors are one line, YAML and
archives have limits, names are escaped, nothing is left behind, Ctrl-C is a clean exit.
"""

from __future__ import annotations

import errno
import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from conftest import assert_one_line_error

from ifguide_cli.core.errors import IfguideError, from_environment
from ifguide_cli.core.store import folders, locks
from ifguide_cli.core.store.manifests import QUICK_SPAN
from ifguide_cli.core.store.workspace import Workspace

REPO = Path(__file__).resolve().parents[2]


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
    first, reused, _ = build_report(ws, [ev])
    again, reused, _ = build_report(ws, [ev], name="renamed")
    assert reused and again.id == first.id and again.name == "renamed"
    assert ws.resolve("renamed", "reports").id == first.id


# ---- the workspace path ---------------------------------------------------------------------------------------------------
def test_workspace_paths_that_cannot_be_one_are_one_line(tmp_path):
    from conftest import invoke_cli

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


# ---- YAML with limits -------------------------------------------------------------------------------------------------------
BOMB = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)) + "model: *i\n"
YAMLS = {"bomb.yaml": (BOMB, "expands to more than"), "deep.yaml": ("model: " + "[" * 5000 + "]" * 5000, "nested"),
         "self.yaml": ("a: &x [1, *x]\n", "refers to itself"), "tag.yaml": ("m: !!python/object/apply:os.system [ls]\n",
                                                                           "not valid YAML"),
         "list.yaml": ("- 1\n", "must be a mapping")}


@pytest.mark.parametrize("name", sorted(YAMLS))
def test_yaml_files_are_loaded_with_limits(tmp_path, name):
    from ifguide_cli.core.yamlfile import load_yaml_mapping

    text, needle = YAMLS[name]
    (tmp_path / name).write_text(text)
    started = time.monotonic()
    with pytest.raises(IfguideError, match=needle) as err:
        load_yaml_mapping(tmp_path / name)
    assert name in err.value.one_line() and len(err.value.one_line()) < 300 and time.monotonic() - started < 5


def test_yaml_binary_and_fine_anchors(tmp_path):
    from ifguide_cli.core.yamlfile import load_yaml_mapping

    (tmp_path / "bin.yaml").write_bytes(b"a: \xff\xfe\n")
    with pytest.raises(IfguideError, match="not UTF-8"):
        load_yaml_mapping(tmp_path / "bin.yaml")
    (tmp_path / "ok.yaml").write_text("base: &b {lr: 0.1}\nrun: *b\n")
    assert load_yaml_mapping(tmp_path / "ok.yaml") == {"base": {"lr": 0.1}, "run": {"lr": 0.1}}


# ---- RAD downloads and archives ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://h/x.zip", "javascript:alert(1)", "http://h/x.zip", "", "x.zip"])
def test_rad_url_must_be_https(tmp_path, url):
    from ifguide_cli.core.rad.source import fetch_source

    with pytest.raises(IfguideError, match="https") as err:
        fetch_source(Workspace(tmp_path), None, url, None)
    assert err.value.exit_code == 2


def test_rad_default_release_needs_a_checksum_and_a_cached_download_is_checked_again(tmp_path, monkeypatch):
    from ifguide_cli.core.rad import source as rad_source
    ws = Workspace(tmp_path)
    monkeypatch.setattr(rad_source, "_check_online", lambda url: None)
    with pytest.raises(IfguideError, match="not pinned"):
        rad_source.fetch_source(ws, None, None, None)
    with pytest.raises(IfguideError, match="64 hexadecimal"):
        rad_source.valid_sha256("zz")
    downloads = []

    def download(url, target, reporter=None):
        downloads.append(url)
        target.write_bytes(b"release")

    monkeypatch.setattr(rad_source, "_download", download)
    url = "https://example.org/saved_models.zip"
    src, _ = rad_source.fetch_source(ws, None, url, None)
    rad_source.fetch_source(ws, None, url, None)
    assert len(downloads) == 1  # reused: its checksum is the one recorded
    src.write_bytes(b"tampered")
    rad_source.fetch_source(ws, None, url, None)
    assert len(downloads) == 2 and src.read_bytes() == b"release"


def _zip(path: Path, members: dict[str, bytes], method=zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_rad_archives_are_extracted_with_limits(tmp_path):
    from ifguide_cli.core.rad.source import extract_from_zip

    work = tmp_path / "work"
    work.mkdir()
    weights = "saved_models/gpt2_toxicity/pytorch_model.bin"
    bomb = _zip(tmp_path / "bomb.zip", {weights: bytes(50 << 20)})
    with pytest.raises(IfguideError, match="zip bomb"):
        extract_from_zip(bomb, work)
    many = _zip(tmp_path / "many.zip", {**{f"junk/{i}": b"" for i in range(1001)}, weights: b"x"}, zipfile.ZIP_STORED)
    with pytest.raises(IfguideError, match=r"many\.zip holds 1002 files"):
        extract_from_zip(many, work)
    slip = _zip(tmp_path / "slip.zip", {"../../escaped": b"x", weights: b"x"})
    assert extract_from_zip(slip, work) == work / weights  # only the weights and the files beside them are read
    slip = _zip(tmp_path / "slip2.zip", {"saved_models/gpt2_toxicity/../../../../x.bin": b"x"})
    with pytest.raises(IfguideError, match="outside"):
        extract_from_zip(slip, work)
    (tmp_path / "t.zip").write_bytes(bomb.read_bytes()[:1000])
    with pytest.raises(IfguideError, match=r"t\.zip is not a readable zip"):
        extract_from_zip(tmp_path / "t.zip", work)
    assert not (tmp_path / "escaped").exists()


# ---- one line for every failure ----------------------------------------------------------------------------------------------
def test_machine_failures_are_user_errors_and_bugs_say_so():
    full = from_environment(OSError(errno.ENOSPC, "No space left on device", "/ws/x.safetensors"))
    assert "x.safetensors" in full.one_line() and "free disk space" in full.one_line()
    assert "file too large" in from_environment(OSError(errno.EFBIG, "File too large", "/ws/y")).one_line()
    assert from_environment(ValueError("a bug")) is None


def test_an_unexpected_exception_is_an_internal_error_that_asks_for_a_report(cli, monkeypatch):
    from ifguide_cli.core.store import workspace
    def boom(self, kind=None):
        raise ZeroDivisionError("bug")

    monkeypatch.setattr(workspace.Workspace, "list", boom)
    line = assert_one_line_error(cli("workspace", "ls"), "internal error: ZeroDivisionError", "--debug", "report")
    assert "bug" in line


def _run(*args, signal_at: float | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "ifguide_cli", *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    if signal_at is not None:
        time.sleep(signal_at)
        proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.parametrize("args, needle", [(("train", "tiny", "--max-steps", "inf"), "--max-steps"),
                                          (("workspace", "ls", "--bogus"), "--bogus"),
                                          (("nosuch",), "nosuch")])
def test_usage_errors_are_one_line_with_exit_2(tmp_path, args, needle):
    res = _run("--workspace", str(tmp_path), *args)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], res.stderr
    assert "╭" not in res.stderr and "Traceback" not in res.stderr


@pytest.mark.slow
@pytest.mark.parametrize("at", [0.3, 0.6, 1.5])
def test_ctrl_c_at_any_moment_is_a_clean_exit(tmp_path, at):
    res = _run("--workspace", str(tmp_path), "train", "tiny", "--data", "tiny", "--max-steps", "50", signal_at=at)
    assert res.returncode in (130, -signal.SIGINT), res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / ".locks").exists() or list((tmp_path / ".locks").iterdir()) == []


def test_json_output_of_damaged_listing_is_machine_readable(chain, cli):
    *_, mask = chain
    (mask.path / "manifest.json").write_bytes(b"\x1b[2J{")
    listed = cli("--json", "workspace", "ls")
    assert json.loads(listed.stdout)["damaged"][0]["id"] == mask.id


# ---- input files that cannot be read as such ---------------------------------------------------------------------------
def test_a_pipe_given_as_data_is_refused_not_waited_on(tmp_path):
    from ifguide_cli.core.data.sources import Source

    os.mkfifo(tmp_path / "fifo.jsonl")
    with pytest.raises(IfguideError, match=r"fifo\.jsonl is not a regular file"):
        list(Source(str(tmp_path / "fifo.jsonl")).records())


def test_a_huge_document_is_cut_with_a_note_and_memory_stays_bounded(tmp_path, monkeypatch):
    from ifguide_cli.core import notes
    from ifguide_cli.core.data import sources

    monkeypatch.setattr(sources, "MAX_DOC_CHARS", 100)
    monkeypatch.setattr(sources, "MAX_LINE_BYTES", 1000)
    (tmp_path / "one.txt").write_text("é" * 5000 + "\nshort\n" + "x" * 300 + "\n")
    notes.reset()
    docs = list(sources.iter_documents(sources.Source(str(tmp_path / "one.txt"))))
    assert [len(d.text) for d in docs] == [100, 5, 100] and [d.line for d in docs] == [1, 2, 3]
    assert any("only its beginning is read" in n for n in notes.collected())  # the line was not read whole
    assert sum("only the first 100 are used" in n for n in notes.collected()) == 1  # one note, not one per document
    (tmp_path / "long.jsonl").write_text(json.dumps({"text": "y" * 2000}) + "\n")
    with pytest.raises(IfguideError, match=r"long\.jsonl:1 is longer than"):
        list(sources.Source(str(tmp_path / "long.jsonl")).records())


def test_a_device_is_never_replaced_by_an_output_file(tmp_path):
    from ifguide_cli.core.store.workspace import atomic_write_text

    os.mkfifo(tmp_path / "out.html")
    with pytest.raises(IfguideError, match="not a regular file"):
        atomic_write_text(tmp_path / "out.html", "<html>")
    assert not (tmp_path / "out.html").is_file() and list(tmp_path.iterdir()) == [tmp_path / "out.html"]


# ---- found by running the whole fault sweep -------------------------------------------------------------------------------
def test_a_corpus_without_text_is_named(tmp_path, cli):
    (tmp_path / "empty.jsonl").write_bytes(b"")
    assert_one_line_error(cli("train", "tiny", "--data", tmp_path / "empty.jsonl", "--seq-len", "64", "--max-steps", "1"),
                          "empty.jsonl", "no document with text")


def test_query_fields_that_are_not_text_are_one_line_naming_the_file(tmp_path):
    from ifguide_cli.core.data import load_queries

    path = tmp_path / "numbers.jsonl"
    path.write_text('{"prompt": "hi", "continuation": 5}\n')
    with pytest.raises(IfguideError, match=r"numbers\.jsonl.*continuation: int"):
        load_queries(str(path))


def test_a_truncated_score_file_is_named_not_an_mmap_crash(tmp_path):
    import numpy as np

    from ifguide_cli.core.masking import load_scores, save_safetensors

    path = tmp_path / "s.safetensors"
    save_safetensors(path, {"scores": np.ones((64, 64), dtype=np.float32)})
    os.truncate(path, path.stat().st_size // 2)
    with pytest.raises(IfguideError, match=r"s\.safetensors: tensor 'scores' is truncated"):
        load_scores(path)


def test_non_finite_scores_of_a_file_name_the_file(tmp_path, cli):
    import numpy as np

    np.save(tmp_path / "nan.npy", np.full((4, 8), np.nan, dtype=np.float32))
    assert_one_line_error(cli("mask", tmp_path / "nan.npy"), "nan.npy", "non-finite")


def test_a_damaged_resumable_training_state_suggests_restart(tmp_path):
    from ifguide_cli.core.training.checkpoint import check_resumable

    checkpoint = tmp_path / "checkpoint-2"
    checkpoint.mkdir()
    _zip(checkpoint / "optimizer.pt", {"archive/data.pkl": b"x" * 1000}, zipfile.ZIP_STORED)
    (checkpoint / "trainer_state.json").write_text('{"global_step": 2}')
    check_resumable(checkpoint)  # whole: nothing to say
    os.truncate(checkpoint / "optimizer.pt", 300)
    with pytest.raises(IfguideError, match=r"optimizer\.pt: it is cut short") as err:
        check_resumable(checkpoint)
    assert "--restart" in err.value.one_line()


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


def test_a_whole_number_too_large_for_torch_is_refused_not_trained_forever():
    from ifguide_cli.core.training.config import TrainConfig

    with pytest.raises(IfguideError, match="--max-steps must be at most"):
        TrainConfig(max_steps=10**19)
    assert TrainConfig(max_steps=2**62).max_steps == 2**62


def test_mask_top_below_zero_is_refused_before_any_work(cli):
    assert_one_line_error(cli("mask", "nosuch", "--top", "-1"), "--top", code=2)


def test_a_model_folder_that_needs_its_own_code_is_refused_without_a_prompt(tmp_path, cli):
    from ifguide_cli.core.models import resolve_model

    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "config.json").write_text(json.dumps({"model_type": "evil", "auto_map": {"AutoModelForCausalLM": "evil.M"}}))
    (evil / "evil.py").write_text(f"open({str(tmp_path / 'pwned')!r}, 'w')\n")
    assert_one_line_error(cli("finetune", evil, "--data", "tiny", "--max-steps", "1", input="y\n"), "evil", "auto_map")
    assert not (tmp_path / "pwned").exists()
    (evil / "config.json").write_text(json.dumps({"model_type": "gpt_neox", "auto_map": {"AutoConfig": "evil.C"}}))
    assert resolve_model(str(evil)).source == "local"  # a built-in architecture loads without the folder's code


def test_log_file_is_checked_before_any_work(tmp_path):
    from ifguide_cli.core.store.folders import check_output_file

    check_output_file(str(tmp_path / "log.jsonl"), "--log-file")  # a new file in an existing folder
    assert not (tmp_path / "log.jsonl").exists()  # nothing created by the check
    for bad, why in ((tmp_path / "no" / "log.jsonl", "does not exist"), (tmp_path, "is a folder")):
        with pytest.raises(IfguideError, match=f"--log-file .*{why}"):
            check_output_file(str(bad), "--log-file")


def test_an_unwritable_log_file_is_named_and_the_logs_after_it_are_not_written(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from ifguide_cli.core.progress import NULL
    from ifguide_cli.core.training import trainer

    class Full:
        def __init__(self, path, mode):
            self.path = Path(path)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def write(self, text):
            if self.path.name == "full":
                raise OSError(errno.ENOSPC, "No space left on device")
            self.path.write_text(text)

    monkeypatch.setattr(trainer, "open", Full, raising=False)
    callback = trainer.ReportCallback(NULL, [tmp_path / "full", tmp_path / "staging.log"], 64)
    state = SimpleNamespace(is_world_process_zero=True, global_step=1, epoch=0.1)
    with pytest.raises(OSError) as err:
        callback.on_log(None, state, None, logs={"loss": 1.0})
    assert str(tmp_path / "full") in from_environment(err.value).one_line()
    assert not (tmp_path / "staging.log").exists()


def test_ctrl_c_while_the_command_line_is_still_being_imported_is_a_clean_exit(monkeypatch, capsys):
    import builtins

    from ifguide_cli import __main__ as entry

    real_import = builtins.__import__

    def interrupted_import(name, *args, **kwargs):
        if name == "ifguide_cli.cli.app":  # `from ifguide_cli.cli.app import main`: Ctrl-C lands while typer and rich load
            raise KeyboardInterrupt
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", interrupted_import)
    with pytest.raises(SystemExit) as exit_:
        entry.main()
    assert exit_.value.code == 130 and capsys.readouterr().err == "error: interrupted\n"


def test_hub_loads_never_ask_to_run_a_models_own_code(monkeypatch):
    """A hub model with its own code must fail in one line, not ask `run the custom code? [y/N]` on the terminal:
    every hub load passes trust_remote_code=False, so transformers raises instead of prompting."""
    import transformers

    from ifguide_cli.core.errors import IfguideError
    from ifguide_cli.core.models import ModelRef, load_config

    seen = []

    def refuse(name, **kwargs):
        seen.append(kwargs.get("trust_remote_code"))
        raise ValueError(f"The repository {name} contains custom code which must be executed to correctly load the model.")

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", refuse)
    with pytest.raises(IfguideError, match="needs its own Python code"):
        load_config(ModelRef("org/custom", "hub", "org/custom", "org/custom"))
    assert seen == [False]
