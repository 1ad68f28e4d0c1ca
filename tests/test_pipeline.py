"""`ifguide run`: pipeline files, and the tiny preset end to end (the paper's effect at toy scale)."""

from __future__ import annotations

import pytest

from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.pipeline import load_spec, preset_path, reduction_factor, spec_from_dict


def test_tiny_preset_parses():
    spec = load_spec(preset_path("tiny"))
    assert spec.model == "tiny" and spec.data == "tiny"
    assert spec.eval.classifier == "profanity" and spec.lam == 1.5
    assert spec.mask["threshold"] == 0.99


def test_unknown_keys_are_errors_not_silent_defaults():
    with pytest.raises(IfguideError, match="unknown key"):
        spec_from_dict({"mask": {"treshold": 0.9}})
    with pytest.raises(IfguideError, match="unknown section"):
        spec_from_dict({"evals": {}})
    with pytest.raises(IfguideError, match="unknown key"):
        spec_from_dict({"eval": {"sample": 3}})


def test_reduction_factor():
    assert reduction_factor(0.5, 0.1, 100) == (pytest.approx(5.0), False)
    # no prompt left toxic: TP < 1/100, so the reduction is at least 0.5 × 100
    assert reduction_factor(0.5, 0.0, 100) == (pytest.approx(50.0), True)
    assert reduction_factor(None, 0.1, 10) == (None, False)


def test_run_needs_a_file_or_a_preset(cli, tmp_path):
    assert cli("run").exit_code == 2
    assert cli("run", "--preset", "huge").exit_code == 2
    missing = cli("run", str(tmp_path / "none.yaml"))
    assert missing.exit_code == 2 and "does not exist" in missing.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("mask: {threshold: 0.9, widow: 2}\n")
    result = cli("run", str(bad))
    assert result.exit_code == 2 and "widow" in result.stderr


def test_print_config(cli):
    result = cli("--json", "run", "--preset", "tiny", "--print-config")
    assert result.exit_code == 0 and "toxic_queries" in result.json["yaml"]


@pytest.mark.slow
def test_tiny_preset_shows_the_effect_and_reruns_from_the_store(cli):
    first = cli("--json", "run", "--preset", "tiny")
    assert first.exit_code == 0, first.stderr
    out = first.json
    assert set(out["stages"]) >= {"baseline", "factors", "scores", "mask", "control", "ifguide", "report"}
    assert out["mask"]["precision_at_k"] >= 0.9
    control, ifguide = out["control"], out["ifguide"]
    assert control["toxicity_probability"] > 0.2  # the baseline really learned the planted insults
    assert out["reduction"] >= 3.0
    assert ifguide["perplexity"] <= 1.10 * control["perplexity"]
    again = cli("--json", "run", "--preset", "tiny").json
    assert all(stage["reused"] for stage in again["stages"].values())
    assert again["reduction"] == out["reduction"]


def test_print_config_of_a_missing_file_is_one_line(cli, tmp_path):
    result = cli("run", str(tmp_path / "nope.yaml"), "--print-config")
    assert result.exit_code == 2 and "does not exist" in result.stderr and "internal error" not in result.stderr
