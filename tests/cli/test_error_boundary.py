"""One line for every failure: machine failures become user errors, a bug says it is one, a usage error is one
line with exit 2, and Ctrl-C at any moment (even while the command line is still being imported) is exit 130."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from clikit import assert_one_line_error

from ifguide_cli.core.errors import from_environment

REPO = Path(__file__).resolve().parents[2]


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


def test_mask_top_below_zero_is_refused_before_any_work(cli):
    assert_one_line_error(cli("mask", "nosuch", "--top", "-1"), "--top", code=2)


@pytest.mark.slow
@pytest.mark.parametrize("at", [0.3, 0.6, 1.5])
def test_ctrl_c_at_any_moment_is_a_clean_exit(tmp_path, at):
    res = _run("--workspace", str(tmp_path), "train", "tiny", "--data", "tiny", "--max-steps", "50", signal_at=at)
    assert res.returncode in (130, -signal.SIGINT), res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / ".locks").exists() or list((tmp_path / ".locks").iterdir()) == []


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
