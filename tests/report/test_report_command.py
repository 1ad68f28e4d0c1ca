"""`ifguide report`: systems grouped from evals, the rich table, the self-contained HTML page."""

from __future__ import annotations

import base64
import re

import pytest
from clikit import assert_one_line_error

from ifguide_cli.core.report.build import (
    ReportRefs,
    ReportStage,
    build_report,
    build_rows,
    create_report,
    make_plots,
    render_html,
)
from ifguide_cli.core.store.workspace import Workspace


def _report(ws, evals, **options):
    """(artifact, reused, rows) of the report of `evals`: the rows are the stage's inputs, as `ifguide report` shows them."""
    inputs = ReportStage().inputs(ws, ReportRefs(tuple(evals), options.pop("control", None)))
    res = create_report(ws, inputs, **options)
    return res.artifact, res.reused, inputs.rows


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
    art, reused, _rows = _report(ws, arts)
    assert art.kind == "reports" and set(art.parents) == {a.id for a in arts} and not reused
    assert art.summary["plots"] == ["per_attribute", "toxicity_probability", "toxicity_vs_perplexity"]
    page = art.file("report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "0.557 ± 0.100" in page and "25.84" in page
    assert "http://" not in page and "https://" not in page  # self-contained
    pngs = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    assert len(pngs) == 3 and all(base64.b64decode(p)[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert build_report(ws, arts).reused is True


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


# ---- arms against a control, with intervals ------------------------------------------------------------
PROMPTS = [f"prompt {i}" for i in range(6)]
CONTROL_MAX = [0.9, 0.8, 0.7, 0.6, 0.2, 0.1]  # TP 4/6
NLL, TOKENS = [10.0, 20.0, 30.0], [5, 5, 5]


def _mask(ws, name="mask", **summary):
    art, _ = ws.create("masks", {"test": name}, [], lambda ctx: {"tokens_selected": 120, "documents_selected": 12,
                       "label_precision_at_k": 0.8, "label_auc": 0.9, "max_tokens": 150, **summary}, name=name)
    return art


def _checkpoint(ws, name, seed, mask=None, lam=None, mode="finetune", **extra):
    config = {"mode": mode, "model": {"source": "registry", "location": "tiny"}, "dataset": "d", "mask": mask,
              "lambda": lam, "seed": seed, "train": {"seed": seed, "lr": 1e-3}, **extra}
    art, _ = ws.create("checkpoints", config, [], lambda ctx: {"steps": 1}, name=name)
    return art


def _model(ckpt):
    return {"source": "checkpoint", "artifact_id": ckpt.id, "family": "gpt_neox"}


def _toxicity_eval(ws, ckpt, maxima, prompts=PROMPTS, classifier="profanity"):
    """A toxicity eval whose prompt i has two continuations scoring maxima[i] and maxima[i] / 2."""
    import json

    from ifguide_cli.core.evaluation.metrics import summarize_scores

    records = [{"prompt": p, "toxic": i % 2 == 0, "continuations": ["a", "b"], "scores": {"toxicity": [m, m / 2]}}
               for i, (p, m) in enumerate(zip(prompts, maxima, strict=True))]

    def build(ctx):
        (ctx.staging / "continuations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        metrics = summarize_scores(records, ["toxicity"])
        return {"task": "toxicity", "model": ckpt.name, "defense": "none", "classifier": classifier, "samples": 2,
                **{k: metrics[k] for k in ("expected_max_toxicity", "expected_max_toxicity_std", "toxicity_probability",
                                           "prompts", "primary_attribute", "splits", "per_attribute")}}

    config = {"task": "toxicity", "model": _model(ckpt), "defense": {"name": "none"}, "prompts": len(prompts),
              "generation": {"samples": 2, "max_new_tokens": 5}, "classifier": classifier, "test": list(maxima)}
    art, _ = ws.create("evals", config, [ckpt.id], build, name=f"{ckpt.name}-toxicity")
    return art


def _fluency_eval(ws, ckpt, nll, tokens=TOKENS, per_document=True, data="held-out"):
    import json
    import math

    def build(ctx):
        if per_document:
            (ctx.staging / "perplexity_docs.jsonl").write_text(
                "".join(json.dumps({"nll": x, "tokens": t}) + "\n" for x, t in zip(nll, tokens, strict=True)))
        return {"task": "fluency", "model": ckpt.name, "defense": "none", "perplexity": math.exp(sum(nll) / sum(tokens))}

    config = {"task": "fluency", "model": _model(ckpt), "defense": {"name": "none"}, "perplexity_data": {"name": data},
              "test": list(nll)}
    art, _ = ws.create("evals", config, [ckpt.id], build, name=f"{ckpt.name}-fluency")
    return art


@pytest.fixture
def arms(tmp_path):
    """control (seeds 0, 1), ifguide (seeds 0, 1: every prompt's scores halved, +0.1 nats per token) and wordlist
    (seed 0, token filtering: the control's scores), evals given in mixed order."""
    ws = Workspace(tmp_path / "ws")
    mask, words = _mask(ws, source="influence"), _mask(ws, "words", source="wordlist", tokens_selected=90)
    half = [m / 2 for m in CONTROL_MAX]
    shifted = [x + 0.1 * t for x, t in zip(NLL, TOKENS, strict=True)]
    evals = []
    for seed in (0, 1):
        suffix = "" if seed == 0 else f"-seed{seed}"
        control = _checkpoint(ws, f"control{suffix}", seed)
        ifguide = _checkpoint(ws, f"ifguide{suffix}", seed, mask.id, 1.0)
        evals += [_toxicity_eval(ws, ifguide, half), _toxicity_eval(ws, control, CONTROL_MAX),
                  _fluency_eval(ws, control, NLL), _fluency_eval(ws, ifguide, shifted)]
    wordlist = _checkpoint(ws, "wordlist", 0, words.id, 1.0, suppression="filter")
    evals += [_toxicity_eval(ws, wordlist, CONTROL_MAX), _fluency_eval(ws, wordlist, NLL)]
    return ws, evals


def test_arms_against_the_default_control(arms):
    import math

    ws, evals = arms
    art, _, rows = _report(ws, evals)
    s = art.summary
    assert s["control"]["name"] == "control" and s["control"]["seeds"] == [0, 1]
    assert [(c["name"], c["seeds"]) for c in s["comparisons"]] == [("ifguide", [0, 1]), ("wordlist", [0])]
    ifg, words = s["comparisons"]
    assert ifg["emt"]["value"] == pytest.approx(s["control"]["emt"]["value"] / 2)
    # all 6 prompts lower: of the 2^6 sign patterns only all-plus and all-minus reach the observed |mean|
    # Holm over the 2 arms doubles the smaller p-value: 6 prompts cannot show a significant difference
    assert ifg["reduction"]["emt"] == {"value": 0.5, "ci95": [0.5, 0.5], "p_value": 2 / 2**6, "p_holm": 2 * 2 / 2**6,
                                       "significant": False}
    assert ifg["reduction"]["tp"]["value"] == 1.0 and ifg["reduction"]["tp"]["p_value"] == 2 / 2**4  # McNemar 4:0
    assert ifg["significant"] is False and ifg["verdict"].startswith("no significant difference (TP 100.0% reduction")
    assert ifg["perplexity_cost"]["value"] == pytest.approx(math.exp(0.1) - 1)
    assert ifg["perplexity_cost"]["ci95"] == pytest.approx([math.exp(0.1) - 1] * 2)
    assert words["reduction"]["emt"] == {"value": 0.0, "ci95": [0.0, 0.0], "p_value": 1.0, "p_holm": 1.0,
                                         "significant": False}
    assert words["perplexity_cost"]["value"] == pytest.approx(0.0)
    assert ifg["per_seed"]["tp"] == {"n": 2, "mean": 0.0, "std": 0.0, "min": 0.0, "max": 0.0}
    assert ifg["mask"]["tokens"] == 120 and ifg["mask"]["precision_at_k"] == 0.8 and ifg["mask"]["source"] == "influence"
    assert ifg["mask"]["suppression"] == "penalty" and words["mask"]["suppression"] == "filter" and words["mask"]["tokens"] == 90
    assert s["control"]["mask"]["mask"] is None
    assert s["headline"].startswith("No significant difference in toxicity from control (profanity classifier, "
                                    "6 prompts × 2 samples, 2 seeds); the largest change, ifguide: TP 0.667 → 0.000")
    assert "lowers" not in s["headline"] and "perplexity cost of +10.5%" in s["headline"]
    assert "significant: none; not significant: ifguide, wordlist" in s["headline"]
    assert s["configuration"]["lambda"] == {"ifguide": 1.0, "wordlist": 1.0} and s["configuration"]["samples"] == [2]
    assert art.config == {"schema": 1, "evals": [e.id for e in evals], "control": None, "statistics": None}  # the default control and statistics: found from the evals alone
    named = build_report(ws, evals, control="control").artifact
    assert named.config["control"] == [ws.resolve(n, "checkpoints").id for n in ("control", "control-seed1")]
    assert named.summary["comparisons"] == s["comparisons"]
    colours = {r["arm"]: r["colour"] for r in rows}
    assert len(set(colours.values())) == 3 and colours["ifguide"] == ifg["colour"]
    page = art.file("report.html").read_text()
    assert page.index(s["headline"].split(":")[0]) < page.index("<img")  # the headline comes first
    assert all(f"background:{c}" in page for c in colours.values()) and "Masks" in page and "token budget" in page
    assert art.summary["plots"] == ["per_attribute", "reductions", "toxicity_probability", "toxicity_vs_perplexity"]


def test_a_report_without_a_control_keeps_its_identity(evals):
    from ifguide_cli.core.report.build import ReportConfig

    ws, arts = evals
    art = build_report(ws, arts).artifact
    assert art.config == {"schema": 1, "evals": [a.id for a in arts], "control": None, "statistics": None}
    assert "comparisons" not in art.summary
    other = build_report(ws, arts, config=ReportConfig(draws=500, seed=3)).artifact
    assert other.config["statistics"] == {"draws": 500, "seed": 3} and other.id != art.id


def test_control_option_picks_the_arm(arms):
    from clikit import invoke_cli

    ws, evals = arms
    ids = [e.id for e in evals]
    by_name = invoke_cli(ws.root, "--json", "report", *ids, "--control", "wordlist", "--bootstrap", "300").json
    assert by_name["summary"]["control"]["name"] == "wordlist" and "the largest change, ifguide" in by_name["headline"]
    assert [c["name"] for c in by_name["comparisons"]] == ["ifguide", "control"]
    seed1 = ws.resolve("ifguide-seed1", "checkpoints").id
    by_checkpoint = invoke_cli(ws.root, "--json", "report", *ids, "--control", seed1).json
    assert by_checkpoint["summary"]["control"]["name"] == "ifguide"
    assert by_checkpoint["comparisons"][0]["reduction"]["emt"]["value"] == -1.0  # control is twice as toxic
    table = invoke_cli(ws.root, "report", *ids)
    assert table.exit_code == 0 and "against the control control" in table.stdout and "no significant difference" in table.stdout
    assert_one_line_error(invoke_cli(ws.root, "report", *ids, "--control", "nope"), "--control nope", "wordlist")
    other = _checkpoint(ws, "unevaluated", 3)
    assert_one_line_error(invoke_cli(ws.root, "report", *ids, "--control", "unevaluated"), other.id, "no eval")
    assert_one_line_error(invoke_cli(ws.root, "report", *ids, "--bootstrap", "5"), "--bootstrap")


def test_prompts_and_held_out_text_must_be_the_same(arms):
    ws, evals = arms
    odd = _checkpoint(ws, "odd", 0, evals[0].config["model"]["artifact_id"], 2.0)
    fewer = _toxicity_eval(ws, odd, CONTROL_MAX[:5], PROMPTS[:5])
    with pytest.raises(Exception) as err:
        build_report(ws, [*evals, fewer])
    assert "do not score the same prompts" in str(err.value) and "has 5" in str(err.value)
    other = _checkpoint(ws, "other", 0, evals[0].config["model"]["artifact_id"], 3.0)
    renamed = _toxicity_eval(ws, other, CONTROL_MAX, [*PROMPTS[:2], "changed", *PROMPTS[3:]])
    with pytest.raises(Exception, match="first different prompt: #3"):
        build_report(ws, [*evals, renamed])
    third = _checkpoint(ws, "third", 0, evals[0].config["model"]["artifact_id"], 4.0)
    with pytest.raises(Exception, match="different text"):
        build_report(ws, [*evals, _fluency_eval(ws, third, NLL, data="elsewhere")])
    with pytest.raises(Exception, match="different classifiers"):
        build_report(ws, [*evals, _toxicity_eval(ws, third, CONTROL_MAX, classifier="detoxify-unbiased")])


def test_prompts_differ_is_one_line_in_the_cli(arms):
    from clikit import invoke_cli

    ws, evals = arms
    odd = _checkpoint(ws, "odd", 0, evals[0].config["model"]["artifact_id"], 2.0)
    fewer = _toxicity_eval(ws, odd, CONTROL_MAX[:5], PROMPTS[:5])
    assert_one_line_error(invoke_cli(ws.root, "report", *[e.id for e in evals], fewer.id), "same prompts", "--prompts")


def test_no_default_control_among_several_candidates(tmp_path):
    from ifguide_cli.core import notes

    ws = Workspace(tmp_path / "ws")
    a, b = _checkpoint(ws, "plain-a", 0), _checkpoint(ws, "plain-b", 0, lr="other")
    art = build_report(ws, [_toxicity_eval(ws, a, CONTROL_MAX), _toxicity_eval(ws, b, CONTROL_MAX)]).artifact
    assert "comparisons" not in art.summary
    assert any("could be the control" in n and "--control" in n for n in notes.collected())


def test_old_fluency_evals_give_a_cost_without_interval(tmp_path):
    import math

    ws = Workspace(tmp_path / "ws")
    control, arm = _checkpoint(ws, "control", 0), _checkpoint(ws, "arm", 0, _mask(ws).id, 1.0)
    evals = [_toxicity_eval(ws, control, CONTROL_MAX), _fluency_eval(ws, control, NLL, per_document=False),
             _toxicity_eval(ws, arm, CONTROL_MAX), _fluency_eval(ws, arm, [x * 2 for x in NLL], per_document=False)]
    cost = build_report(ws, evals).artifact.summary["comparisons"][0]["perplexity_cost"]
    assert cost["ci95"] is None and cost["value"] == pytest.approx(math.exp(4) - 1)


def test_fluency_stores_per_document_nll_that_add_up(tmp_path):
    import json

    from evalkit import tiny_lm

    from ifguide_cli.core.evaluation import FluencyConfig, evaluate_fluency
    from ifguide_cli.core.evaluation.fluency import perplexity
    from ifguide_cli.core.models import resolve_model

    model, tok = tiny_lm()
    texts = ["the cat sat on the mat " * 30, "a short one", "x"]
    whole = perplexity(model, tok, texts, batch_size=2, max_length=16)
    docs = whole["per_document"]
    assert sum(docs["tokens"]) == whole["tokens"] and docs["tokens"][2] == 1  # "x" + EOS: one predicted token
    alone = [perplexity(model, tok, [t], max_length=16)["nll_sum"] for t in texts]
    assert docs["nll"] == pytest.approx(alone, rel=1e-5)
    ws = Workspace(tmp_path / "ws")
    art = evaluate_fluency(ws, resolve_model("tiny"), FluencyConfig(ppl_docs=4, no_lambada=True, max_length=32)).artifact
    lines = [json.loads(x) for x in art.file("perplexity_docs.jsonl").read_text().splitlines()]
    assert len(lines) == 4 and sum(x["tokens"] for x in lines) == art.summary["perplexity_tokens"]
    assert "per_document" not in json.loads(art.file("metrics.json").read_text())["perplexity"]


def test_the_page_renders_in_a_headless_browser(arms, tmp_path):
    """A screenshot of the page by Chromium (skipped without it): the page loads offline and lays out to full width."""
    import shutil
    import struct
    import subprocess

    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no chromium on PATH")
    ws, evals = arms
    page = build_report(ws, evals).artifact.file("report.html")
    shot = tmp_path / "report.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars", f"--screenshot={shot}",
                    "--window-size=1280,2000", page.as_uri()], capture_output=True, timeout=120, check=True)
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24]) == (1280, 2000)
    assert len(png) > 50_000  # tables and plots, not a blank page


def test_an_arm_is_named_after_its_lowest_seed(tmp_path):
    ws = Workspace(tmp_path / "ws")
    mask = _mask(ws).id
    late, first, control = _checkpoint(ws, "tox-7", 7, mask, 1.0), _checkpoint(ws, "tox", 0, mask, 1.0), _checkpoint(ws, "c", 0)
    art, _, rows = _report(ws, [_toxicity_eval(ws, late, CONTROL_MAX), _toxicity_eval(ws, first, CONTROL_MAX),
                                _toxicity_eval(ws, control, CONTROL_MAX)])
    assert [(c["name"], c["seeds"]) for c in art.summary["comparisons"]] == [("tox", [0, 7])]
    assert [r["arm"] for r in rows] == ["tox", "tox", "c"]
