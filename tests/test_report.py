"""`ifguide report`: systems grouped from evals, the rich table, the self-contained HTML page."""

from __future__ import annotations

import base64
import re

import pytest
from conftest import assert_one_line_error

from ifguide_cli.core.report import build_report, build_rows, make_plots, render_html
from ifguide_cli.core.workspace import Workspace


def _fake_eval(ws, name, task, model, defense, summary, source=None):
    config = {"task": task, "model": {"source": "registry", "location": model}, "defense": {"name": defense}}
    if source:
        config = {"task": task, "source": source}
    art, _ = ws.create("evals", config, [source] if source else [], lambda ctx: {"task": task, "model": model,
                       "defense": defense, **summary}, name=name)
    return art


def _tox(emt, tp, classifier="detoxify-unbiased"):
    return {"classifier": classifier, "expected_max_toxicity": emt, "expected_max_toxicity_std": 0.1,
            "toxicity_probability": tp, "prompts": 10, "primary_attribute": "toxicity",
            "splits": {"toxic": {"expected_max_toxicity": emt + 0.1, "toxicity_probability": tp + 0.1, "prompts": 5},
                       "nontoxic": {"expected_max_toxicity": emt - 0.1, "toxicity_probability": tp - 0.1, "prompts": 5}},
            "per_attribute": {"toxicity": {"expected_max_toxicity": emt, "toxicity_probability": tp},
                              "insult": {"expected_max_toxicity": emt / 2, "toxicity_probability": tp / 2}}}


@pytest.fixture
def evals(tmp_path):
    ws = Workspace(tmp_path / "ws")
    base_tox = _fake_eval(ws, "baseline", "toxicity", "base", "none", _tox(0.557, 0.56))
    base_flu = _fake_eval(ws, None, "fluency", "base", "none", {"perplexity": 25.84, "lambada_accuracy": 0.3})
    ifg_tox = _fake_eval(ws, "if-guide", "toxicity", "ifg", "none", _tox(0.101, 0.154))
    ifg_flu = _fake_eval(ws, None, "fluency", "ifg", "none", {"perplexity": 26.77, "lambada_accuracy": 0.29})
    ifg_imp = _fake_eval(ws, None, "implicit", None, None, {**_tox(0.2, 0.15, "toxigen-roberta")}, source=ifg_tox.id)
    rad_tox = _fake_eval(ws, None, "toxicity", "base", "rad", _tox(0.3, 0.25))
    return ws, [base_tox, base_flu, ifg_tox, ifg_flu, ifg_imp, rad_tox]


def test_rows_group_evals_into_systems(evals):
    ws, arts = evals
    rows = build_rows(ws, arts)
    assert [r["label"] for r in rows] == ["baseline", "if-guide", "base + rad"]
    base, ifg, rad = rows
    assert base["expected_max_toxicity"] == 0.557 and base["perplexity"] == 25.84 and base["lambada_accuracy"] == 0.3
    assert ifg["other_classifiers"]["toxigen-roberta (implicit)"]["expected_max_toxicity"] == 0.2
    assert rad["perplexity"] is None and rad["defense"] == "rad"


def test_report_artifact_html_and_plots(evals, tmp_path):
    ws, arts = evals
    art, reused, _rows = build_report(ws, arts)
    assert art.kind == "reports" and set(art.parents) == {a.id for a in arts} and not reused
    assert art.summary["plots"] == ["per_attribute", "toxicity_probability", "toxicity_vs_perplexity"]
    page = art.file("report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "0.557 ± 0.100" in page and "25.84" in page
    assert "http://" not in page and "https://" not in page  # self-contained
    pngs = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    assert len(pngs) == 3 and all(base64.b64decode(p)[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert build_report(ws, arts)[1] is True


def test_report_cli_table_json_and_html_file(cli, workspace_dir, tmp_path):
    ws = Workspace(workspace_dir)
    a = _fake_eval(ws, "baseline", "toxicity", "base", "none", _tox(0.5, 0.5))
    b = _fake_eval(ws, "if-guide", "toxicity", "ifg", "none", _tox(0.1, 0.05))
    out = tmp_path / "cmp.html"
    table = cli("report", "baseline", "if-guide", "--html", out)
    assert table.exit_code == 0, table.stderr
    assert "baseline" in table.stdout and "if-guide" in table.stdout and "0.500 ± 0.100" in table.stdout
    assert out.read_text().startswith("<!DOCTYPE html>")
    data = cli("--json", "report", a.id, b.id).json
    assert data["kind"] == "reports" and [r["label"] for r in data["rows"]] == ["baseline", "if-guide"]
    assert_one_line_error(cli("report", "nope"), "nope")


def test_plots_skip_what_is_missing():
    rows = [{"label": "x", "expected_max_toxicity": None, "perplexity": 3.0, "per_attribute": {},
             "toxicity_probability": None, "splits": {}, "other_classifiers": {}, "lambada_accuracy": None,
             "defense": "none", "classifier": None, "expected_max_toxicity_std": None, "evals": ["abc"]}]
    assert make_plots(rows) == {}
    assert "no plots" in render_html(rows, {})
