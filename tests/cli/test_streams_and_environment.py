"""Issue 26: where the output goes and what the environment is never turn a command into an internal error: a stdout
that cannot be written, an ASCII-only locale, an unusable HOME, a read-only workspace."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from clikit import assert_one_line_error

from ifguide_cli.core.store import folders
from ifguide_cli.core.store.workspace import Workspace

REPO = Path(__file__).resolve().parents[2]
ASCII = {"LC_ALL": "C", "LANG": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0", "PYTHONIOENCODING": ""}


def ifguide(*args, env=None, stdout=subprocess.PIPE):
    full = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "ifguide_cli", *args], env=full, stdout=stdout, stderr=subprocess.PIPE,
                          text=True, timeout=120)


def test_help_in_an_ascii_only_locale_is_shown_not_an_error():
    out = ifguide("train", "--help", env=ASCII)
    assert out.returncode == 0 and "internal error" not in out.stderr and "Usage" in out.stdout


def test_a_non_ascii_name_under_an_ascii_locale_is_stored_as_typed(tmp_path):
    ws = Workspace(tmp_path / "ws")
    ws.create("masks", {}, [], lambda ctx: (ctx.staging / "m.bin").write_text("x") and None)
    art = ws.list()[0]
    renamed = ifguide("--workspace", str(ws.root), "workspace", "ls", env=ASCII)
    assert renamed.returncode == 0, renamed.stderr
    from ifguide_cli.cli.common import utf8_argument

    assert utf8_argument(os.fsdecode("café".encode())) == "café" and art.id in renamed.stdout


def test_a_full_stdout_is_one_line_naming_stdout(tmp_path):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    with open("/dev/full", "w") as full:
        out = ifguide("--workspace", str(tmp_path / "ws"), "--json", "workspace", "ls", stdout=full)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 1 and len(lines) == 1 and "stdout" in lines[0] and "internal error" not in lines[0]


def test_install_completion_with_an_unusable_home_is_one_line(tmp_path):
    (tmp_path / "afile").write_text("x")
    # under `bash -c`, so typer finds the shell whatever started the tests (a job runner, nice, timeout)
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "HOME": str(tmp_path / "afile"), "SHELL": "/bin/bash"}
    out = subprocess.run(["bash", "-c", f"{sys.executable} -m ifguide_cli --install-completion"], env=env,
                         capture_output=True, text=True, timeout=120)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode != 0 and len(lines) == 1 and lines[0].startswith("error:") and "internal error" not in lines[0]


def test_latest_without_a_kind_is_refused(cli):
    assert_one_line_error(cli("workspace", "show", "latest:"), "latest:", "kind", code=2)


def test_a_read_only_workspace_is_read_without_lock_files(tmp_path, monkeypatch):
    ws = Workspace(tmp_path / "ws")
    art, _ = ws.create("masks", {}, [], lambda ctx: (ctx.staging / "m.bin").write_text("x") and None)
    for lock in (ws.root / ".locks").iterdir():
        lock.unlink()
    (ws.root / ".locks").rmdir()
    monkeypatch.setattr(folders, "writable", lambda root: False)
    assert Workspace(ws.root).resolve(art.id, "masks").id == art.id
    assert not (ws.root / ".locks").exists()


def test_a_closed_stdout_is_one_line(tmp_path):
    out = subprocess.run(["bash", "-c", 'exec "$@" >&-', "x", sys.executable, "-m", "ifguide_cli", "--workspace",
                          str(tmp_path / "ws"), "--json", "workspace", "ls"],
                         env={**os.environ, "PYTHONPATH": str(REPO)}, stderr=subprocess.PIPE, text=True, timeout=120)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 1 and len(lines) == 1 and "stdout is closed" in lines[0]
