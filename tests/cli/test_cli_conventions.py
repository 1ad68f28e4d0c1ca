"""CLI conventions, registry, warnings, offline fast failure, completions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from clikit import assert_one_line_error, invoke_cli

from ifguide_cli.cli.app import COMMANDS as LISTED
from ifguide_cli.cli.app import hoist_global_flags
from ifguide_cli.core import hub, notes
from ifguide_cli.core.errors import IfguideError, OfflineResourceMissing

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = ("factors", "scores", "train", "finetune", "report", "run")
GROUPS = ("mask", "eval", "rad", "workspace", "registry")


def _listed_commands(help_text: str) -> list[str]:
    """The names in the `Commands` panel of a rich --help page."""
    names, inside = [], False
    for line in help_text.splitlines():
        if line.startswith("╭─ Commands"):
            inside = True
        elif line.startswith("╰"):
            inside = False
        elif inside and line[2:3].strip():  # a row that starts a new command (not a wrapped help line)
            names.append(line[2:].split()[0])
    return names


def _subcommands(name: str) -> list[str]:
    """The subcommands a group's help lists (the groups are imported lazily: app.COMMANDS is the registry)."""
    return _listed_commands(invoke_cli(".", name, "--help").stdout)


def test_every_command_and_group_is_registered_and_has_working_help(cli):
    assert set(COMMANDS) | set(GROUPS) <= set(LISTED)
    assert _listed_commands(cli("--help").stdout) == list(LISTED)
    for name in COMMANDS:
        result = cli(name, "--help")
        assert result.exit_code == 0 and f"Usage: ifguide {name} " in result.stdout, result.output
    for name in GROUPS:
        subcommands = _subcommands(name)
        assert subcommands, name
        for sub in subcommands:
            assert cli(name, sub, "--help").exit_code == 0, (name, sub)


def test_version(cli):
    result = cli("--version")
    assert result.exit_code == 0 and result.stdout.startswith("ifguide ")


def test_workspace_path_follows_flag_and_env(tmp_path, monkeypatch):
    env = {**os.environ, "IFGUIDE_HOME": str(tmp_path / "x")}
    out = subprocess.run([sys.executable, "-m", "ifguide_cli", "workspace", "path"], env=env, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == str(tmp_path / "x")


def test_registry_models_json_lists_paper_models_and_tiny(cli):
    result = cli("--json", "registry", "models")
    names = {m["name"] for m in result.json["models"]}
    assert {"tiny", "pythia-160m", "pythia-410m", "pythia-1b", "llama-3.2-1b", "pythia-2.8b"} <= names
    by_name = {m["name"]: m for m in result.json["models"]}
    assert by_name["pythia-2.8b"]["from_scratch"] is False and by_name["pythia-160m"]["hub_id"] == "EleutherAI/pythia-160m"
    datasets = {d["name"] for d in cli("--json", "registry", "datasets").json["datasets"]}
    assert {"openwebtext", "rtp", "attaq", "bold", "lambada", "tiny"} <= datasets
    classifiers = {c["name"] for c in cli("--json", "registry", "classifiers").json["classifiers"]}
    assert {"detoxify-unbiased", "toxigen-roberta", "profanity"} <= classifiers


def test_global_flags_after_the_subcommand_are_hoisted():
    assert hoist_global_flags(["registry", "models", "--json"]) == ["--json", "registry", "models"]
    assert hoist_global_flags(["mask", "show", "x", "-q", "--", "--json"]) == ["-q", "mask", "show", "x", "--", "--json"]
    out = subprocess.run([sys.executable, "-m", "ifguide_cli", "registry", "models", "--json"], capture_output=True, text=True)
    assert out.returncode == 0 and json.loads(out.stdout)["models"]


def test_empty_workspace_ls_and_json(cli):
    result = cli("--json", "workspace", "ls")
    assert result.exit_code == 0 and result.json["artifacts"] == []


def test_missing_artifact_is_one_line_error_without_traceback(cli):
    line = assert_one_line_error(cli("workspace", "show", "nope"), code=1)
    assert line.startswith("error: no artifact 'nope'")


def test_workspace_show_and_rm_through_cli(cli, workspace_dir):
    from ifguide_cli.core.store.workspace import Workspace

    ws = Workspace(workspace_dir)
    d, _ = ws.create("datasets", {}, [], lambda ctx: (ctx.staging / "a").write_text("a") and None, name="d")
    f, _ = ws.create("factors", {}, [d.id], lambda ctx: None)
    shown = cli("--json", "workspace", "show", f.id[:6]).json
    assert shown["manifest"]["id"] == f.id and shown["lineage"]["parents"][0]["id"] == d.id
    assert shown["damaged_files"] == []
    assert_one_line_error(cli("workspace", "rm", "d"), "--recursive", code=2)
    removed = cli("--json", "workspace", "rm", "d", "--recursive").json["removed"]
    assert {r["id"] for r in removed} == {d.id, f.id}
    assert cli("--json", "workspace", "ls").json["artifacts"] == []


@pytest.fixture
def fresh_hub_decision(monkeypatch):
    monkeypatch.setattr(hub, "_decided", None)
    yield
    hub.set_offline(True)


def test_hub_offline_flag_is_respected(monkeypatch, fresh_hub_decision):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.is_offline() is True
    import huggingface_hub.constants

    assert huggingface_hub.constants.HF_HUB_OFFLINE is True


def test_unreachable_hub_is_detected_fast(monkeypatch, fresh_hub_decision):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # closed port: refused at once
    start = time.perf_counter()
    assert hub.is_offline() is True
    assert time.perf_counter() - start < hub.PROBE_TIMEOUT_S + 1


def test_missing_hub_model_fails_fast_with_one_clear_line(monkeypatch, fresh_hub_decision):
    from ifguide_cli.core.models import load_config, resolve_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", "/nonexistent-hf-home")
    start = time.perf_counter()
    with pytest.raises(OfflineResourceMissing) as err:
        load_config(resolve_model("some-org/not-cached-model"))
    assert time.perf_counter() - start < 10
    line = err.value.one_line()
    assert "some-org/not-cached-model" in line and "local" in line and "\n" not in line


def test_missing_hub_dataset_fails_fast(monkeypatch, fresh_hub_decision):
    from ifguide_cli.core.data import load_records

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(OfflineResourceMissing, match="some-org/not-cached-data"):
        load_records("some-org/not-cached-data")
    assert time.perf_counter() - start < 15


def test_unknown_model_and_dataset_names(tmp_path):
    from ifguide_cli.core.data import load_records
    from ifguide_cli.core.models import resolve_model

    with pytest.raises(IfguideError, match="unknown model 'gpt-nothing'"):
        resolve_model("gpt-nothing")
    with pytest.raises(IfguideError, match="unknown dataset"):
        load_records("nothing-here")
    (tmp_path / "notmodel").mkdir()
    with pytest.raises(IfguideError, match="not a model folder"):
        resolve_model(str(tmp_path / "notmodel"))


def test_local_dataset_formats(tmp_path):
    from ifguide_cli.core.data import load_queries, load_records

    (tmp_path / "a.jsonl").write_text('{"text": "one"}\n{"text": "two"}\n')
    (tmp_path / "b.txt").write_text("first line\n\nsecond line\n")
    (tmp_path / "q.jsonl").write_text('{"prompt": {"text": "Hi"}, "continuation": {"text": " there"}}\n')
    assert [r["text"] for r in load_records(str(tmp_path / "a.jsonl"))[0]] == ["one", "two"]
    assert [r["text"] for r in load_records(str(tmp_path / "b.txt"))[0]] == ["first line", "second line"]
    assert load_queries(str(tmp_path / "q.jsonl"))[0] == [{"prompt": "Hi", "continuation": " there"}]
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(IfguideError, match=r"bad\.jsonl:1 is not valid JSON"):
        load_records(str(tmp_path / "bad.jsonl"))


HEAVY = ("torch", "transformers", "datasets", "kronfluence", "numpy", "safetensors", "matplotlib", "textual")


def test_help_imports_nothing_heavy():
    """Help and the CLI's import stay instant: no heavy library is imported until a command needs it.

    Every help page is rendered in a fresh interpreter, then its sys.modules is checked.
    """
    pages = [[]] + [[name] for name in LISTED] + [[g, sub] for g in GROUPS for sub in _subcommands(g)]
    code = (
        "import json, sys\n"
        "from typer.testing import CliRunner\n"
        "from ifguide_cli.cli.app import app\n"
        f"codes = [CliRunner().invoke(app, [*page, '--help']).exit_code for page in {pages!r}]\n"
        f"print(json.dumps({{'codes': codes, 'heavy': [m for m in {HEAVY!r} if m in sys.modules]}}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)
    assert seen["codes"] == [0] * len(pages)
    assert seen["heavy"] == []


def test_completions_are_current():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_completions.py"), "--check"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    for name in ("ifguide.bash", "_ifguide", "ifguide.fish"):
        assert "ifguide" in (ROOT / "completions" / name).read_text()


def test_json_output_never_contains_nan(capsys):
    from ifguide_cli.cli import common

    common.settings = common.Settings(json=True)
    notes.reset()
    try:
        common.emit({"ppl": float("nan"), "rows": [1.0, float("inf")]})
    finally:
        common.settings = common.Settings()
    assert json.loads(capsys.readouterr().out) == {"ppl": None, "rows": [1.0, None], "warnings": []}


# ---- warnings: what a terminal user sees on stderr, a --json user finds under `warnings` ----------------
def test_notes_collect_in_order_once_and_reset():
    heard = []
    notes.reset(heard.append)
    notes.warn("first")
    notes.warn("second")
    notes.warn("first")  # the same note twice is shown once
    assert notes.collected() == ["first", "second"] and heard == ["first", "second"]
    copy = notes.collected()
    copy.append("not recorded")
    assert notes.collected() == ["first", "second"]
    notes.reset()
    notes.warn("third")
    assert notes.collected() == ["third"] and heard == ["first", "second"]  # a new invocation, no listener
    notes.reset()


@pytest.fixture
def warning_command(monkeypatch):
    """`registry models` with a core step that records a note (markup-like text must print literally)."""
    from ifguide_cli.core import registry

    rows = registry.as_rows

    def as_rows_with_a_note(table):
        notes.warn("--lambda [x] has no effect without --mask")
        return rows(table)

    monkeypatch.setattr(registry, "as_rows", as_rows_with_a_note)
    return ("registry", "models")


def test_a_warning_reaches_the_terminal_user_on_stderr(cli, warning_command):
    result = cli(*warning_command)
    assert result.exit_code == 0
    assert result.stderr.splitlines() == ["warning: --lambda [x] has no effect without --mask"]
    assert "warning" not in result.stdout


def test_a_warning_reaches_the_json_user_in_the_object(cli, warning_command):
    result = cli("--json", *warning_command)
    assert result.exit_code == 0 and result.stderr == ""
    assert result.json["warnings"] == ["--lambda [x] has no effect without --mask"]
    assert result.json["models"]


def test_quiet_hides_warnings_and_each_invocation_starts_afresh(cli, warning_command):
    quiet = cli("--quiet", *warning_command)
    assert quiet.exit_code == 0 and quiet.stderr == ""
    assert cli("--json", "workspace", "ls").json["warnings"] == []  # nothing left over from before


def test_every_json_object_carries_warnings(cli):
    for args in (("registry", "classifiers"), ("workspace", "ls"), ("workspace", "path"),
                 ("run", "--preset", "tiny", "--print-config")):
        assert cli("--json", *args).json["warnings"] == [], args


# ---- the gpu marker ------------------------------------------------------------------------------------
@pytest.mark.gpu
def test_auto_device_is_the_gpu_when_there_is_one():
    import torch

    from ifguide_cli.core.dist import device_label, resolve_device

    assert resolve_device("auto") == "cuda"
    assert device_label("cuda") == torch.cuda.get_device_name(0)


def test_gpu_tests_skip_cleanly_without_cuda():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run([sys.executable, "-m", "pytest", __file__, "-m", "gpu", "-q", "-rs", "-p", "no:cacheprovider"],
                         capture_output=True, text=True, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 skipped" in out.stdout and "needs a CUDA device" in out.stdout


def test_user_files_are_checked_and_written_atomically(tmp_path):
    from ifguide_cli.cli import common

    with pytest.raises(IfguideError, match="is a folder"):
        common.write_user_file(str(tmp_path), "x")
    with pytest.raises(IfguideError, match="does not exist"):
        common.write_user_file(str(tmp_path / "no" / "r.html"), "x")
    written = common.write_user_file(str(tmp_path / "r.html"), "<html></html>")
    assert written.read_text() == "<html></html>" and [p.name for p in tmp_path.iterdir()] == ["r.html"]


def test_lambda_without_a_mask_warns_on_stderr_and_in_json(tmp_path):
    args = ("train", "tiny", "--data", "tiny", "--lambda", "2", "--max-steps", "1", "--batch-size", "4", "--seq-len", "32")
    terminal = invoke_cli(tmp_path, *args)
    assert terminal.exit_code == 0, terminal.output
    assert "warning: --lambda has no effect without --mask" in terminal.stderr
    scripted = invoke_cli(tmp_path, "--json", *args)  # reused: the note is about the options, so it comes again
    assert scripted.exit_code == 0 and scripted.json["reused"]
    assert any("--lambda has no effect without --mask" in w for w in scripted.json["warnings"])
