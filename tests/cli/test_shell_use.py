"""At home in a shell, a log file and a pipe (issue 15): unwrapped YAML, progress for logs, plain output that
never cuts, help pages, value completion, `ifguide env`, lazy command groups."""

from __future__ import annotations

import inspect
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from clikit import invoke_cli

from ifguide_cli.cli import completion
from ifguide_cli.cli.app import COMMANDS, app, hoist_global_flags
from ifguide_cli.core.progress import PlainReporter
from ifguide_cli.core.store.workspace import Workspace

ROOT = Path(__file__).resolve().parents[2]
PRESET = ROOT / "ifguide_cli" / "assets" / "presets" / "tiny.yaml"
HEX64 = "0123456789abcdef" * 4


def _run(*args, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    """`python -m ifguide_cli ARGS` in a fresh interpreter, stdout and stderr to pipes (not a terminal)."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "ifguide_cli", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, env=full_env, **kwargs)


def _artifact(ws: Workspace, kind: str, name: str | None = None, key: int = 0):
    """A finished artifact with one file (so its manifest holds a sha256), built without any stage."""

    def build(ctx):
        (ctx.staging / "data.txt").write_text(f"{kind} {key}")
        return {"digest": HEX64}

    return ws.create(kind, {"key": key}, [], build, name=name)[0]


# ---- YAML ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("columns", ["40", "200"])
def test_print_config_round_trips_at_any_width(columns):
    out = _run("run", "--preset", "tiny", "--print-config", env={"COLUMNS": columns})
    assert out.returncode == 0, out.stderr
    assert yaml.safe_load(out.stdout) == yaml.safe_load(PRESET.read_text())


def test_dump_yaml_never_wraps():
    from ifguide_cli.core.yamlfile import dump_yaml

    data = {"model": {"location": "/a/very/long/path/" * 12 + "model"}, "note": "λ " + "word " * 40 + "end"}
    text = dump_yaml(data)
    assert yaml.safe_load(text) == data and len(text.splitlines()) == 3


# ---- progress --------------------------------------------------------------------------------------------
class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_plain_progress_lines_at_a_steady_cadence():
    stream, clock = io.StringIO(), Clock()
    reporter = PlainReporter(stream, label="train", interval=10, clock=clock)
    with reporter.task("training", total=100) as task:
        task.set(completed=20)  # a resumed run: the rate counts from here
        for _ in range(40):
            clock.now += 0.5
            task.advance(1)
    lines = stream.getvalue().splitlines()
    assert lines == ["[train] training 40% 40/100 2.0 it/s ETA 0:00:30",
                     "[train] training 60% 60/100 2.0 it/s ETA 0:00:20",
                     "[train] training 60% 60/100 2.0 it/s done in 0:00:20"]


def test_plain_progress_is_silent_for_short_tasks_and_after_errors():
    stream, clock = io.StringIO(), Clock()
    reporter = PlainReporter(stream, interval=10, clock=clock)
    with reporter.task("quick", total=3) as task:
        task.advance(3)
    with pytest.raises(RuntimeError), reporter.task("failing") as task:
        clock.now += 11
        task.advance(1)
        raise RuntimeError
    assert stream.getvalue() == "failing 1\n"  # no "done" line after the error, no label without one


def test_reporter_follows_where_stderr_goes(monkeypatch):
    from ifguide_cli.cli import common
    from ifguide_cli.core.progress import NULL

    monkeypatch.setattr(common, "settings", common.Settings(stage="eval"))
    monkeypatch.setenv("IFGUIDE_PROGRESS_INTERVAL", "5")
    plain = common.reporter()  # pytest's stderr is not a terminal
    assert isinstance(plain, PlainReporter) and plain.label == "eval" and plain.interval == 5
    monkeypatch.setattr(common, "settings", common.Settings(quiet=True))
    assert common.reporter() is NULL


def test_progress_lines_on_stderr_of_a_piped_json_command(tmp_path):
    env = {"IFGUIDE_HOME": str(tmp_path), "IFGUIDE_PROGRESS_INTERVAL": "0"}
    out = _run("--json", "tokenizer", "train", "tiny", "--vocab-size", "300", env=env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["kind"] == "tokenizers"  # stdout: exactly one JSON object
    lines = out.stderr.splitlines()
    assert lines and all(line.startswith("[tokenizer] reading documents ") for line in lines), out.stderr
    assert re.search(r"it/s done in \d+:\d\d:\d\d$", lines[-1]), lines[-1]
    quiet = _run("--json", "-q", "tokenizer", "train", "tiny", "--vocab-size", "300", "--force", env=env)
    assert quiet.returncode == 0 and quiet.stderr == "" and json.loads(quiet.stdout)


@pytest.mark.slow
def test_training_progress_in_a_log(tmp_path):
    env = {"IFGUIDE_HOME": str(tmp_path), "IFGUIDE_PROGRESS_INTERVAL": "0"}
    out = _run("--json", "train", "tiny", "--data", "tiny", "--max-steps", "5", "--batch-size", "4", "--seq-len", "32",
               "--eval-docs", "8", env=env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["summary"]["steps"] == 5
    steps = [line for line in out.stderr.splitlines() if line.startswith("[train] training ")]
    assert any(re.search(r" 40% 2/5 .* ETA \d:\d\d:\d\d", line) for line in steps), out.stderr
    assert "100% 5/5" in steps[-1] and "done in" in steps[-1]


# ---- plain output ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("flags", [["--no-truncate"], []])
def test_registry_keeps_hub_ids_whole(tmp_path, flags):
    out = invoke_cli(tmp_path, *flags, "registry", "models", env={"COLUMNS": "30"})  # CliRunner: not a terminal
    assert out.exit_code == 0, out.output
    assert "EleutherAI/pythia-160m" in out.stdout and "meta-llama/Llama-3.2-1B" in out.stdout
    assert "…" not in out.stdout and "│" not in out.stdout
    row = next(line for line in out.stdout.splitlines() if line.startswith("pythia-2.8b "))
    assert row.split()[:3] == ["pythia-2.8b", "EleutherAI/pythia-2.8b", "2.8B"] and row == row.rstrip()


def test_workspace_ls_and_show_keep_ids_names_and_hashes_whole(tmp_path):
    ws = Workspace(tmp_path)
    long_name = "baseline-with-a-rather-long-name-that-would-not-fit"
    art = _artifact(ws, "checkpoints", long_name)
    _artifact(ws, "datasets", key=1)
    listing = invoke_cli(tmp_path, "--no-truncate", "workspace", "ls", env={"COLUMNS": "40"})
    rows = {line.split()[0]: line.split() for line in listing.stdout.splitlines()[2:]}
    assert rows[art.id][:3] == [art.id, "checkpoints", long_name], listing.stdout
    brief = invoke_cli(tmp_path, "workspace", "show", art.name, env={"COLUMNS": "40"})
    assert art.id in brief.stdout and '"files"' not in brief.stdout and len(brief.stdout.splitlines()) < 40
    shown = invoke_cli(tmp_path, "workspace", "show", art.name, "--raw", env={"COLUMNS": "40"})
    assert f'"digest": "{HEX64}"' in shown.stdout
    assert any(re.fullmatch(r'\s*"sha256": "[0-9a-f]{64}",?', line) for line in shown.stdout.splitlines()), shown.stdout


def test_no_truncate_is_a_global_flag_anywhere():
    assert hoist_global_flags(["workspace", "ls", "--no-truncate"]) == ["--no-truncate", "workspace", "ls"]


# ---- help ------------------------------------------------------------------------------------------------
def _root_group():
    import typer

    return typer.main.get_group(app)


def _pages() -> list[list[str]]:
    """Every command path: the groups' subcommands are read from the loaded groups."""
    import typer

    pages = []
    for name, (module, _) in COMMANDS.items():
        holder = typer.Typer()
        __import__(f"ifguide_cli.cli.{module}", fromlist=["register"]).register(holder)
        command = typer.main.get_group(holder).commands[name]
        subs = getattr(command, "commands", {})
        pages += [[name, sub] for sub in subs] if subs else [[name]]
    return pages


def test_listed_summaries_are_the_commands_own_first_paragraph():
    import typer

    for name, (module, summary) in COMMANDS.items():
        holder = typer.Typer()
        __import__(f"ifguide_cli.cli.{module}", fromlist=["register"]).register(holder)
        command = typer.main.get_group(holder).commands[name]
        assert inspect.cleandoc(command.help).split("\n\n")[0].replace("\n", " ") == summary, name


def test_every_help_page_has_examples_and_no_value_placeholder_on_flags(tmp_path):
    root = invoke_cli(tmp_path, "-h", env={"COLUMNS": "120"})
    assert root.exit_code == 0 and "<bool>" not in root.stdout
    listed = re.findall(r"^│ (\S+) ", root.stdout.split("Commands")[1], flags=re.M)
    assert listed == list(COMMANDS)
    for page in _pages():
        out = invoke_cli(tmp_path, *page, "-h", env={"COLUMNS": "120"})
        text = out.stdout
        assert out.exit_code == 0 and f"Usage: ifguide {' '.join(page)}" in text, (page, out.output)
        assert "<bool>" not in text and not re.search(r"\S \.(\s|$)", text), page  # no "AdamW β1 ." left
        assert "Example" in text, f"{' '.join(page)} has no example"


def test_help_details_users_asked_for(tmp_path):
    def page(*args):
        return invoke_cli(tmp_path, *args, "--help", env={"COLUMNS": "100"}).stdout

    assert "profanity" in page("eval", "toxicity") and "detoxify-unbiased-small" in page("eval", "toxicity")
    assert "-m ifguide_cli finetune" in page("finetune") and "ifguide_cli train" not in page("finetune")
    assert "model_types: [phi]" in " ".join(page("factors").split())
    train = page("train")
    assert "[default: 0.9]" in train and "[default: by profile]" in train


# ---- completion ------------------------------------------------------------------------------------------
class FakeContext:
    def __init__(self, workspace):
        self.params = {"workspace": workspace}

    def find_root(self):
        return self


def test_artifact_completion_offers_the_workspaces_ids_and_names(tmp_path):
    ws = Workspace(tmp_path)
    mask = _artifact(ws, "masks", "my-mask")
    evaluation = _artifact(ws, "evals", key=2)
    complete = completion.artifacts("masks")
    ctx = FakeContext(str(tmp_path))
    assert [v for v, _ in complete(ctx, mask.id[:3])] == [mask.id]
    assert [v for v, _ in complete(ctx, "my")] == ["my-mask"]
    assert evaluation.id not in [v for v, _ in complete(ctx, "")]
    models = [v for v, _ in completion.artifacts("checkpoints", registry="models")(ctx, "pythia-1")]
    assert models == ["pythia-160m", "pythia-1b"]
    assert completion.artifacts()(FakeContext(str(tmp_path / "none")), "") == []
    assert [v for v, _ in completion.kinds(ctx, "ch")] == ["checkpoints"]


def _complete(words: str, root: Path) -> tuple[list[str], list[str]]:
    """Run the bash completion protocol in a fresh interpreter: (offered values, heavy modules imported)."""
    code = ("import sys\nfrom ifguide_cli.cli.app import main\nsys.argv = ['ifguide']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'numpy', 'transformers', 'datasets') if m in sys.modules), file=sys.stderr)")
    env = {**os.environ, "_IFGUIDE_COMPLETE": "complete_bash", "COMP_WORDS": words,
           "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)), "IFGUIDE_HOME": str(root)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env)
    assert out.returncode == 0, out.stderr
    return out.stdout.split(), json.loads(out.stderr.strip().splitlines()[-1].replace("'", '"'))


def test_shell_completion_end_to_end_without_heavy_imports(tmp_path):
    ws = Workspace(tmp_path)
    mask = _artifact(ws, "masks", "my-mask")
    offered, heavy = _complete(f"ifguide train tiny --data tiny --mask {mask.id[:4]}", tmp_path)
    assert offered == [mask.id] and heavy == []
    assert _complete("ifguide factors tiny --strategy k", tmp_path)[0] == ["kfac"]
    assert _complete("ifguide eval toxicity tiny --precision b", tmp_path)[0] == ["bf16"]
    assert set(_complete("ifguide scores x -t t --device ", tmp_path)[0]) == {"auto", "cpu", "cuda"}
    assert _complete("ifguide workspace ls ma", tmp_path)[0] == ["masks"]
    assert "my-mask" in _complete("ifguide workspace show ", tmp_path)[0]
    assert "profanity" in _complete("ifguide eval toxicity tiny --classifier p", tmp_path)[0]


# ---- env -------------------------------------------------------------------------------------------------
def test_env_reports_versions_devices_workspace_and_offline_availability(tmp_path):
    ws = Workspace(tmp_path)
    _artifact(ws, "masks", "m")
    data = invoke_cli(tmp_path, "--json", "env").json
    assert data["versions"]["python"] and data["versions"]["ifguide-cli"]
    assert isinstance(data["devices"]["cuda"], bool)
    assert data["workspace"]["path"] == str(tmp_path) and data["workspace"]["artifacts"]["masks"] == 1
    models = {m["name"]: m for m in data["models"]}
    assert models["tiny"]["offline"] and Path(models["tiny"]["where"]).is_dir()
    assert {d["name"] for d in data["datasets"] if d["offline"]} >= {"tiny", "tiny-prompts"}
    classifiers = {c["name"]: c for c in data["classifiers"]}
    assert classifiers["profanity"]["offline"] and not classifiers["rad-reward"]["offline"]
    assert set(classifiers) >= {"detoxify-unbiased", "toxigen-roberta"}
    shown = invoke_cli(tmp_path, "env", env={"COLUMNS": "40"})
    assert shown.exit_code == 0 and str(tmp_path) in shown.stdout


def test_env_finds_a_model_in_the_hub_cache(tmp_path):
    from ifguide_cli.core.environment import model_status
    from ifguide_cli.core.registry import MODELS

    repo = tmp_path / "models--EleutherAI--pythia-160m"
    snapshot = repo / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc")
    (snapshot / "config.json").write_text("{}")
    assert model_status(MODELS["pythia-160m"], str(tmp_path))["missing"] == "EleutherAI/pythia-160m tokenizer"
    (snapshot / "tokenizer.json").write_text("{}")
    status = model_status(MODELS["pythia-160m"], str(tmp_path))
    assert status["offline"] and status["where"] == str(snapshot)
    assert model_status(MODELS["pythia-2.8b"], str(tmp_path))["offline"] is False


# ---- startup ---------------------------------------------------------------------------------------------
def test_help_imports_no_command_module():
    code = ("import sys\nfrom ifguide_cli.cli.app import main\nsys.argv = ['ifguide', '--help']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith('ifguide_cli.cli.') and m.split('.')[-1] not in "
            "('app', 'commands', 'common', 'completion', 'errors')), file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stderr.strip().splitlines()[-1] == "[]", out.stderr
