"""`--report-to`: the Trainer's tracker integrations get the training log and the checkpoint's summary."""

from __future__ import annotations

from pathlib import Path

import pytest
from clikit import assert_one_line_error

from ifguide_cli.core.training import trackers

MICRO = ["--max-steps", "2", "--batch-size", "8", "--save-steps", "2", "--eval-docs", "8", "--logging-steps", "1"]


def _scalar_tags(run_dir: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags: set[str] = set()
    for events in run_dir.rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events))
        acc.Reload()
        tags.update(acc.Tags()["scalars"])
    return tags


def test_report_to_tensorboard_logs_the_training_and_the_summary(cli):
    pytest.importorskip("tensorboard")
    result = cli("--json", "train", "tiny", "--data", "tiny", *MICRO, "--report-to", "tensorboard", "--name", "tb-run")
    assert result.exit_code == 0, result.stderr
    tags = _scalar_tags(Path(result.json["path"]) / "trainer" / "runs")
    assert "train/loss" in tags  # the Trainer's own log
    assert "train/ifguide/steps" in tags and "train/ifguide/eval_loss" in tags  # the stage summary


def test_report_to_none_writes_no_tracker_files(cli):
    result = cli("--json", "train", "tiny", "--data", "tiny", *MICRO, "--report-to", "none")
    assert result.exit_code == 0, result.stderr
    assert not (Path(result.json["path"]) / "trainer" / "runs").exists()


def test_an_unknown_or_missing_tracker_is_one_line_before_any_work(cli, monkeypatch):
    assert_one_line_error(cli("train", "tiny", "--data", "tiny", "--report-to", "neptune"), "unknown tracker neptune", code=2)
    monkeypatch.setattr(trackers, "installed", lambda name: name != "mlflow")
    line = assert_one_line_error(cli("train", "tiny", "--data", "tiny", "--report-to", "mlflow"), code=2)
    assert "pip install mlflow" in line


def test_tracker_choice_rules(monkeypatch):
    monkeypatch.setattr(trackers, "installed", lambda name: name in ("tensorboard", "trackio"))
    assert trackers.resolve_trackers(None) == ["tensorboard"]  # the offline default
    assert trackers.resolve_trackers("all") == ["tensorboard", "trackio"]  # every installed one
    assert trackers.resolve_trackers("none") == []
    assert trackers.resolve_trackers("tensorboard, trackio") == ["tensorboard", "trackio"]
    assert trackers.summary_scalars({"steps": 3, "ok": True, "name": "x", "loss": 1.5}) == {"ifguide/steps": 3.0,
                                                                                          "ifguide/loss": 1.5}
