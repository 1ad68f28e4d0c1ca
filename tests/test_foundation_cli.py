"""CLI conventions, registry, offline fast failure, completions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ifguide_cli.cli.app import hoist_global_flags
from ifguide_cli.core import hub
from ifguide_cli.core.errors import IfguideError, OfflineResourceMissing

ROOT = Path(__file__).resolve().parent.parent


def test_help_lists_every_command_group(cli):
    out = cli("--help").stdout
    for group in ("factors", "scores", "mask", "train", "finetune", "eval", "rad", "workspace", "registry", "report", "run"):
        assert group in out


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
    result = cli("workspace", "show", "nope")
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: no artifact 'nope'")
    assert "Traceback" not in result.output


def test_workspace_show_and_rm_through_cli(cli, workspace_dir):
    from ifguide_cli.core.workspace import Workspace

    ws = Workspace(workspace_dir)
    d, _ = ws.create("datasets", {}, [], lambda ctx: (ctx.staging / "a").write_text("a") and None, name="d")
    f, _ = ws.create("factors", {}, [d.id], lambda ctx: None)
    shown = cli("--json", "workspace", "show", f.id[:6]).json
    assert shown["manifest"]["id"] == f.id and shown["lineage"]["parents"][0]["id"] == d.id
    assert shown["damaged_files"] == []
    refused = cli("workspace", "rm", "d")
    assert refused.exit_code == 2 and "--recursive" in refused.stderr
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
    with pytest.raises(IfguideError, match="bad.jsonl:1 is not valid JSON"):
        load_records(str(tmp_path / "bad.jsonl"))


def test_help_is_fast_and_imports_nothing_heavy():
    code = "import sys; from ifguide_cli.cli.app import app; print(','.join(m for m in ('torch','transformers','datasets','kronfluence','numpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == ""


def test_completions_are_current():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_completions.py"), "--check"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    for name in ("ifguide.bash", "_ifguide", "ifguide.fish"):
        assert "ifguide" in (ROOT / "completions" / name).read_text()


def test_json_output_never_contains_nan(capsys):
    from ifguide_cli.cli import common

    common.settings = common.Settings(json=True)
    try:
        common.emit({"ppl": float("nan"), "rows": [1.0, float("inf")]})
    finally:
        common.settings = common.Settings()
    assert json.loads(capsys.readouterr().out) == {"ppl": None, "rows": [1.0, None]}


def test_user_files_are_checked_and_written_atomically(tmp_path):
    from ifguide_cli.cli import common

    with pytest.raises(IfguideError, match="is a folder"):
        common.write_user_file(str(tmp_path), "x")
    with pytest.raises(IfguideError, match="does not exist"):
        common.write_user_file(str(tmp_path / "no" / "r.html"), "x")
    written = common.write_user_file(str(tmp_path / "r.html"), "<html></html>")
    assert written.read_text() == "<html></html>" and [p.name for p in tmp_path.iterdir()] == ["r.html"]
