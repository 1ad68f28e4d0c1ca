"""The fault sweep (benchmarks/fault_sweep.py) itself: its catalog, its classifier, its audit, and a few real cases.

The sweep's verdicts must be right whatever the tool currently does, so the classifier is checked on made-up
results, and the real cases only have to be classified consistently with what they observed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import pytest

SWEEP_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "fault_sweep.py"


@pytest.fixture(scope="module")
def sweep():
    spec = importlib.util.spec_from_file_location("fault_sweep", SWEEP_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["fault_sweep"] = module  # dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def result(sweep, rc, stderr="", stdout="", **kw):
    return sweep.StepResult(argv=["x"], rc=rc, stdout=stdout, stderr=stderr, seconds=kw.pop("seconds", 1.0), **kw)


def categories(problems):
    return sorted({c for c, _ in problems})


def test_catalog_is_large_and_uniquely_named(sweep):
    cases = sweep.all_cases()
    names = [c.name for c in cases]
    assert len(cases) >= 100
    assert len(names) == len(set(names)), [n for n in names if names.count(n) > 1]
    assert all(c.steps for c in cases)
    assert all(s.expect in ("error", "ok", "any") for c in cases for s in c.steps)
    groups = {c.group for c in cases}
    for group in ("manifest", "input-file", "numbers", "yaml", "names", "archive", "interrupt", "kill", "workspace-path"):
        assert group in groups


def test_filter_selects_by_name_or_group(sweep):
    cases = sweep.all_cases()
    assert {c.group for c in sweep.select(cases, ["concurrency"])} == {"concurrency"}
    assert [c.name for c in sweep.select(cases, ["wspath-empty-string"])] == ["wspath-empty-string"]
    assert sweep.select(cases, []) == cases


def test_classifier_on_made_up_results(sweep):
    bad = sweep.error("train", "--lr", "inf", names=("lr",))
    good = sweep.ok("workspace", "ls")
    assert categories(sweep.classify(bad, result(sweep, 0))) == ["wrong_exit"]
    assert sweep.classify(bad, result(sweep, 2, "error: --lr must be finite; got inf")) == []
    assert categories(sweep.classify(bad, result(sweep, 2, "error: something else"))) == ["unnamed"]
    internal = result(sweep, 1, "error: internal error: ValueError: lr (rerun with --debug for the traceback)")
    assert categories(sweep.classify(bad, internal)) == ["internal_error"]
    crash = result(sweep, 1, "Traceback (most recent call last):\n  File \"x.py\", line 1\nKeyError: 'lr'\n")
    assert "traceback" in categories(sweep.classify(bad, crash))
    assert categories(sweep.classify(good, result(sweep, 2, "error: no"))) == ["wrong_exit"]
    assert categories(sweep.classify(good, result(sweep, -11))) == ["wrong_exit"]
    assert sweep.classify(good, result(sweep, 0)) == []
    assert categories(sweep.classify(good, result(sweep, None, timed_out=True))) == ["hang"]
    late = sweep.error("run", "p.yaml", late_after=20)
    assert categories(sweep.classify(late, result(sweep, None, timed_out=True))) == ["late"]
    assert categories(sweep.classify(late, result(sweep, 2, "error: lambda < 0", cpu_s=45))) == ["late"]
    assert sweep.classify(late, result(sweep, 2, "error: lambda < 0", seconds=45, cpu_s=3)) == []


def test_classifier_on_interruptions(sweep):
    step = sweep.anyhow("train", signals=((0.1, "SIGINT"),))
    assert sweep.classify(step, result(sweep, 130, "error: interrupted", sent="SIGINT")) == []
    assert categories(sweep.classify(step, result(sweep, 0, sent="SIGINT"))) == ["wrong_exit"]
    tb = result(sweep, -2, "Traceback (most recent call last):\nKeyboardInterrupt\n", sent="SIGINT")
    assert categories(sweep.classify(step, tb)) == ["traceback"]
    assert sweep.classify(step, result(sweep, -9, sent="SIGKILL")) == []


def test_verify_artifact_checks_sizes_and_checksums(sweep, tmp_path):
    art = tmp_path / "masks" / "abc"
    art.mkdir(parents=True)
    (art / "mask.safetensors").write_bytes(b"12345678")
    digest = hashlib.sha256(b"12345678").hexdigest()
    (art / "manifest.json").write_text(json.dumps({"files": {"mask.safetensors": {"sha256": digest, "size": 8}}}))
    assert sweep.verify_artifact(art) == []
    (art / "mask.safetensors").write_bytes(b"87654321")  # same size, other bytes
    assert any("checksum" in p for p in sweep.verify_artifact(art))
    (art / "manifest.json").write_text("{")
    assert any("manifest unreadable" in p for p in sweep.verify_artifact(art))


def test_counts_are_per_case(sweep):
    results = [sweep.CaseResult("a", "g", [("hang", "x"), ("hang", "y")], [], 1.0),
               sweep.CaseResult("b", "g", [("traceback", "z")], [], 1.0), sweep.CaseResult("c", "g", [], [], 1.0)]
    tally = sweep.counts(results)
    assert tally["hang"] == 1 and tally["traceback"] == 1 and sum(tally.values()) == 2
    assert set(tally) == set(sweep.CATEGORIES)


CHEAP = ("control-workspace-ls", "wspath-empty-string", "wspath-file-ls", "unknown-ref-workspace-show")


def test_cheap_cases_end_to_end(sweep, tmp_path):
    """Real CLI runs in an empty workspace: each observed outcome is classified consistently."""
    (tmp_path / "prepared" / "ws").mkdir(parents=True)
    prepared = sweep.Prepared(tmp_path / "prepared" / "ws", {}, {}, tmp_path / "small.jsonl")
    cases = {c.name: c for c in sweep.all_cases()}
    for name in CHEAP:
        res = sweep.run_case(cases[name], prepared, tmp_path, timeout=60, strace=None)
        assert res.steps, name
        step, observed = cases[name].steps[0], res.steps[0]
        assert not observed.timed_out and observed.rc is not None, name
        assert set(res.categories) <= set(sweep.CATEGORIES)
        for problem in sweep.classify(step, observed):
            assert problem in res.problems, (name, problem)
        wrong = (step.expect == "error" and observed.rc == 0) or (step.expect == "ok" and observed.rc != 0)
        assert ("wrong_exit" in res.categories) == wrong, (name, observed.rc, res.problems)
        assert ("traceback" in res.categories) == ("Traceback (most recent call" in observed.stdout + observed.stderr)
    assert not (tmp_path / "cases").exists() or not any((tmp_path / "cases").iterdir())


def test_a_ctrl_c_in_the_interpreters_own_startup_is_not_the_tools_traceback(sweep):
    step = sweep.anyhow("workspace", "ls", signals=((0.05, "SIGINT"),))
    startup = result(sweep, 1, "Fatal Python error: init_import_site: Failed to import the site module\n"
                               "Traceback (most recent call last):\n  File \"<frozen site>\"\nKeyboardInterrupt\n", sent="SIGINT")
    assert sweep.classify(step, startup) == []
    ours = result(sweep, -2, "Traceback (most recent call last):\n  File \"ifguide_cli/cli/app.py\"\nKeyboardInterrupt\n",
                  sent="SIGINT")
    assert categories(sweep.classify(step, ours)) == ["traceback"]


def test_a_race_between_a_stage_and_the_removal_of_its_input_has_one_winner(sweep):
    ctx = sweep.Ctx(Path("/ws"), Path("/tmp"), {"mask": "abc123abc123"}, {}, Path("/s"), 1.0, None, Path("/m"))
    check = sweep.one_wins("mask")
    assert check(ctx, [result(sweep, 0), result(sweep, 1, "error: mask artifact abc123abc123 is in use by process 7")]) == []
    assert check(ctx, [result(sweep, 1, "error: no mask artifact 'abc123abc123'"), result(sweep, 0)]) == []
    published = "error: 1 artifact(s) depend on abc123abc123 (226a78a1fb20) — pass --recursive to remove them too"
    assert check(ctx, [result(sweep, 0), result(sweep, 2, published)]) == []  # the stage's result came first
    assert check(ctx, [result(sweep, 0), result(sweep, 2, "error: cannot remove it")])  # refused without saying why
    assert check(ctx, [result(sweep, 0), result(sweep, 0)])  # both "won": the stage used a removed input
    assert check(ctx, [result(sweep, 1, "error: something"), result(sweep, 0)])  # the loser does not say why


def _ctx(sweep, tmp_path, kinds):
    ids = {"mask": "aaaaaaaaaaaa"}
    return sweep.Ctx(tmp_path / "ws", tmp_path / "tmp", ids, kinds, tmp_path / "s", 1.0, None, tmp_path / "m")


def test_a_changed_file_outside_the_commands_own_artifact_is_counted(sweep, tmp_path):
    kinds = {"aaaaaaaaaaaa": "masks"}
    ctx = _ctx(sweep, tmp_path, kinds)
    art = ctx.ws / "masks" / "aaaaaaaaaaaa"
    art.mkdir(parents=True)
    (ctx.tmp).mkdir()
    (art / "manifest.json").write_text(json.dumps({"id": "aaaaaaaaaaaa", "name": None, "created": "t0"}))
    (art / "mask.safetensors").write_bytes(b"1234")
    (ctx.ws / "checkpoints" / "my-run").mkdir(parents=True)
    (ctx.ws / "checkpoints" / "my-run" / "notes.txt").write_text("mine")
    ctx.created = {"aaaaaaaaaaaa": "t0"}
    case = sweep.Case("c", "g", (sweep.ok("x"),))
    before = sweep.snapshot(ctx.ws, ctx.tmp)
    (art / "manifest.json").write_text(json.dumps({"id": "aaaaaaaaaaaa", "name": "renamed", "created": "t0"}))
    assert sweep.changed_outside(ctx, case, before) == []  # a rename is not damage
    (ctx.ws / "checkpoints" / "my-run" / "notes.txt").unlink()
    (art / "mask.safetensors").write_bytes(b"4321")
    found = sweep.changed_outside(ctx, case, before)
    assert any("my-run/notes.txt disappeared" in p for p in found) and any("mask.safetensors was changed" in p for p in found)
    assert sweep.changed_outside(ctx, sweep.Case("c", "g", (sweep.ok("x"),), removes=("mask",)), before) == [
        "ws/checkpoints/my-run/notes.txt disappeared"]


def test_a_published_checkpoint_with_nan_weights_is_counted(sweep, tmp_path):
    import numpy as np
    from safetensors.numpy import save_file

    ctx = _ctx(sweep, tmp_path, {})
    folder = ctx.ws / "checkpoints" / "bbbbbbbbbbbb"
    (folder / "model").mkdir(parents=True)
    save_file({"w": np.array([1.0, np.nan], dtype=np.float32)}, str(folder / "model" / "model.safetensors"))
    (folder / "manifest.json").write_text(json.dumps({"summary": {"final_loss": None}}))
    listed = {"bbbbbbbbbbbb": {"kind": "checkpoints", "path": str(folder)}}
    found = sweep.non_finite_published(ctx, listed)
    assert any("non-finite weights" in p for p in found) and any("final_loss" in p for p in found)
    save_file({"w": np.array([1.0, 2.0], dtype=np.float32)}, str(folder / "model" / "model.safetensors"))
    (folder / "manifest.json").write_text(json.dumps({"summary": {"final_loss": 2.5}}))
    assert sweep.non_finite_published(ctx, listed) == []
