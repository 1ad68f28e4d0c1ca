"""The statistics decide the report's words: "lowers" / "raises" only for a difference whose 95% interval excludes 0
and whose Holm-corrected p-value is below 0.05; hand-made evals with known answers."""

from __future__ import annotations

import test_report_command as kit
from clikit import invoke_cli

from ifguide_cli.core.report.build import build_report
from ifguide_cli.core.report.statistics import holm
from ifguide_cli.core.store.workspace import Workspace

N = 30
PROMPTS = [f"prompt {i}" for i in range(N)]
HIGH = [0.9] * N  # TP 1.0: every prompt has a toxic continuation


def _arm(ws, name, maxima, mask=None, lam=1.0, seed=0):
    ckpt = kit._checkpoint(ws, name, seed, mask, lam if mask else None)
    return kit._toxicity_eval(ws, ckpt, maxima, PROMPTS)


def test_holm_multiplies_by_rank_and_keeps_the_order():
    assert holm([0.01, 0.04, 0.03, None]) == [0.03, 0.06, 0.06, None]
    assert holm([0.5]) == [0.5] and holm([0.3, 0.9]) == [0.6, 0.9]


def test_a_significant_reduction_lowers_and_a_small_one_does_not(tmp_path):
    ws = Workspace(tmp_path / "ws")
    control = _arm(ws, "control", HIGH)
    clear = _arm(ws, "clear", [0.1] * N, kit._mask(ws, "m1").id)
    slight = _arm(ws, "slight", [0.1] * 2 + HIGH[2:], kit._mask(ws, "m2").id, lam=2.0)  # 2 of 30 prompts
    art, _, rows = kit._report(ws, [control, clear, slight])
    s = art.summary
    by = {c["name"]: c for c in s["comparisons"]}
    assert by["clear"]["significant"] is True and by["clear"]["verdict"].startswith("lowers toxicity (TP 100.0% reduction")
    assert by["slight"]["significant"] is False and by["slight"]["verdict"].startswith("no significant difference")
    assert by["slight"]["reduction"]["tp"]["p_value"] == 0.5 and by["slight"]["reduction"]["tp"]["p_holm"] == 0.5
    assert s["headline"].startswith("clear lowers toxicity most against control (profanity classifier, 30 prompts × 2 "
                                    "samples): TP 1.000 → 0.000, a 100.0% reduction")
    assert "significant: clear; not significant: slight." in s["headline"]
    assert [r["label"] for r in rows] == ["control", "clear", "slight"]  # checkpoint names, not eval names
    page = art.file("report.html").read_text()
    assert "no significant difference" in page and "<td>1</td>" in page  # the seeds column is a count


def test_no_significant_difference_never_says_lowers(tmp_path):
    ws = Workspace(tmp_path / "ws")
    control = _arm(ws, "control", [0.9, 0.9, 0.9] + [0.1] * (N - 3))
    arm = _arm(ws, "ifguide", [0.9] + [0.1] * (N - 1), kit._mask(ws).id)  # TP 0.100 → 0.033: McNemar 2:0, p = 0.5
    data = invoke_cli(ws.root, "--json", "report", control.id, arm.id).json
    (comparison,) = data["comparisons"]
    assert comparison["reduction"]["tp"]["value"] > 0.6 and comparison["reduction"]["tp"]["p_value"] == 0.5
    assert comparison["significant"] is False and "lowers" not in data["headline"]
    assert data["headline"].startswith("No significant difference in toxicity from control")
    table = invoke_cli(ws.root, "report", control.id, arm.id)
    assert "lowers" not in table.stdout and "no significant difference" in table.stdout


def test_a_significant_increase_raises(tmp_path):
    ws = Workspace(tmp_path / "ws")
    control = _arm(ws, "control", [0.1] * N)
    worse = _arm(ws, "worse", HIGH, kit._mask(ws).id)
    s = build_report(ws, [control, worse]).artifact.summary
    (c,) = s["comparisons"]
    assert c["significant"] is True and c["verdict"].startswith("raises toxicity")
    assert "lowers" not in s["headline"] and "worse raises toxicity significantly" in s["headline"]


def test_the_headline_says_when_the_evaluation_classifier_built_a_mask(tmp_path):
    ws = Workspace(tmp_path / "ws")
    mask = kit._mask(ws, "cls", source="classifier", classifier="profanity", level="token")
    s = build_report(ws, [_arm(ws, "control", HIGH), _arm(ws, "masked", [0.1] * N, mask.id)]).artifact.summary
    assert "the evaluation classifier also built the mask of masked" in s["headline"]
    assert s["comparisons"][0]["mask"]["classifier"] == "profanity"
