"""`ifguide run` with arms: the spec, its one-line errors, --seeds, the dry-run plan, and a small comparison end to end."""

from __future__ import annotations

import pytest
import yaml
from clikit import assert_one_line_error

from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.pipeline.reading import spec_from_dict
from ifguide_cli.core.pipeline.spec import preset_path
from ifguide_cli.core.pipeline.stage_configs import stage_configs

TWO_ARMS = [{"name": "ifguide", "source": "influence", "suppression": "penalty"},
            {"name": "standard", "source": "standard-influence", "suppression": "filter", "mask": {"window": 0}}]

# a comparison small enough for a test: 192 rows, a 4-step baseline, 3-step fine-tunes, 6 prompts × 2 samples
SMALL = {
    "model": "tiny", "data": "tiny", "corpus": {"max_examples": 192},
    "baseline": {"train": {"max_steps": 4, "batch_size": 16, "eval_docs": 16, "save_steps": 2, "seed": 5}},
    "influence": {"toxic_queries": "tiny-queries-toxic", "safe_queries": "tiny-queries-safe", "factors": {"strategy": "ekfac"}},
    "mask": {"threshold": 0.9, "window": 1, "max_tokens": 300},
    "finetune": {"lambda": 1.5, "train": {"max_steps": 3, "batch_size": 16, "eval_docs": 16, "save_steps": 3, "seed": 7}},
    "arms": TWO_ARMS,
    "eval": {"prompts": "tiny-prompts", "classifier": "profanity", "num_prompts": 6, "samples": 2, "max_new_tokens": 5,
             "lambada": None, "fluency": {"ppl_docs": 8}},
}


def _write(tmp_path, tree: dict, name: str = "arms.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


def _with_arms(*arms, **keys) -> dict:
    """The tiny preset with these arms (and other top-level keys)."""
    return {**yaml.safe_load(preset_path("tiny").read_text()), "arms": list(arms), **keys}


# ---- the spec ------------------------------------------------------------------------------------------
def test_arms_are_typed_and_inherit_the_mask_section_and_lambda():
    spec = spec_from_dict({"mask": {"max_tokens": 500}, "finetune": {"lambda": 2}, "seeds": 3,
                           "arms": [*TWO_ARMS, {"name": "strong", "lambda": 4}]})
    configs = stage_configs(spec)
    ifguide, standard, strong = configs.arms
    assert (ifguide.lam, standard.lam, strong.lam) == (2, None, 4)  # λ: the section's, none for filter, the arm's own
    assert ifguide.mask.max_tokens == standard.mask.max_tokens == 500 and standard.mask.window == 0
    assert ifguide.train_values() == {"suppression": "penalty", "lam": 2} and standard.train_values() == {"suppression": "filter"}
    assert configs.seeds == (0, 1, 2)  # seed, seed + 1, … from the fine-tunes' seed (default 0)
    assert stage_configs(spec_from_dict({"finetune": {"train": {"seed": 7}}, "seeds": 2})).seeds == (7, 8)


def test_without_arms_the_run_is_the_classic_one_and_seeds_alone_compare_ifguide():
    assert not spec_from_dict({}).compares_arms and stage_configs(spec_from_dict({})).arms == ()
    spec = spec_from_dict({"seeds": 2})
    assert spec.compares_arms and [(a.name, a.source, a.suppression) for a in stage_configs(spec).arms] == [
        ("ifguide", "influence", "penalty")]


@pytest.mark.parametrize(("tree", "needles"), [
    ({"arms": [TWO_ARMS[0], TWO_ARMS[1], {"name": "c", "mask": {"window": -1}}]},
     ("t.yaml: arms[2].mask.window: --window must be in [0, inf)",)),
    ({"arms": [{"name": "a", "mask": {"treshold": 0.9}}]}, ("unknown key(s) in t.yaml: arms[0].mask: treshold",)),
    ({"arms": [{"name": "a", "lambda": -1}]}, ("t.yaml: arms[0].lambda: --lambda must be in [0, inf)",)),
    ({"arms": [{"name": "a", "suppression": "drop", "lambda": 2}]}, ("arms[0].lambda applies to suppression penalty only",)),
    ({"arms": [{"name": "a"}, {"name": "a"}]}, ("arms[1].name 'a' is used twice",)),
    ({"arms": [{"name": "control"}]}, ("arms[0].name 'control' is taken by the run itself",)),
    ({"arms": [{"name": "a b"}]}, ("arms[0].name 'a b' is not an arm name",)),
    ({"arms": [{"name": "ifguide-seed2"}]}, ("arms[0].name 'ifguide-seed2' ends like a seed",)),
    ({"arms": [{"source": "influence"}]}, ("arms[0].name is missing",)),
    ({"arms": [{"name": "a", "source": "bert"}]}, ("arms[0].source: --source must be one of influence, standard-influence",)),
    ({"arms": [{"name": "a", "sorce": "influence"}]}, ("unknown key(s) 'sorce' in t.yaml: arms[0]",)),
    ({"arms": {"name": "a"}}, ("t.yaml: arms must be a list of arms",)),
    ({"arms": [{"name": "a"}], "influence": {"safe_queries": None}}, ("arms[0].source influence subtracts the safe queries",)),
    ({"seeds": 0}, ("t.yaml: --seeds must be in [1, 100]",)),
    ({"finetune": {"train": {"suppression": "filter"}}}, ("finetune.train.suppression does not apply",)),
])
def test_every_arm_is_checked_when_the_file_is_read(tree, needles):
    with pytest.raises(IfguideError) as err:
        spec_from_dict(tree, "t.yaml")
    assert err.value.exit_code == 2
    for needle in needles:
        assert needle in err.value.one_line()


def test_a_bad_arm_is_one_line_before_any_stage(cli, tmp_path, workspace_dir):
    tree = _with_arms(*TWO_ARMS, {"name": "wide", "mask": {"window": -3}})
    assert_one_line_error(cli("run", str(_write(tmp_path, tree))), "arms.yaml: arms[2].mask.window", code=2)
    assert_one_line_error(cli("run", str(_write(tmp_path, tree)), "--dry-run"), "arms[2].mask.window", code=2)
    assert not workspace_dir.exists()  # nothing ran


# ---- --set, --seeds, --print-config and the plan ------------------------------------------------------
def test_set_reaches_an_arm_by_index_or_name_and_print_config_shows_the_arms(cli, tmp_path):
    path = _write(tmp_path, _with_arms(*TWO_ARMS))
    result = cli("--json", "run", str(path), "--set", "arms.standard.suppression=drop", "--set", "arms.0.lambda=3",
                 "--seeds", "2", "--print-config")
    assert result.exit_code == 0, result.stderr
    printed = yaml.safe_load(result.json["yaml"])
    assert printed["arms"][0]["lambda"] == 3 and printed["arms"][1]["suppression"] == "drop" and printed["seeds"] == 2
    assert result.json["overrides"][-1] == "seeds=2"
    assert_one_line_error(cli("run", str(path), "--set", "arms.nope.lambda=2", "--dry-run"), "arms has no item 'nope'",
                          code=2)


def test_dry_run_lists_the_arms_and_each_arms_stages(cli, tmp_path, workspace_dir):
    path = _write(tmp_path, _with_arms(*TWO_ARMS))
    plan = cli("--json", "run", str(path), "--dry-run", "--seeds", "2").json
    assert [a["name"] for a in plan["arms"]] == ["ifguide", "standard"] and plan["seeds"] == [0, 1]
    assert plan["arms"][0]["lambda"] == 1.5 and plan["arms"][1]["mask"] == {"threshold": 0.99, "window": 0, "max_tokens": 3000}
    systems = ["baseline", *(f"{s}-seed{k}" for k in (0, 1) for s in ("control", "ifguide", "standard"))]
    assert [s["name"] for s in plan["stages"]] == [
        "data", "baseline", "factors", "scores", "scores_standard", "mask_ifguide", "mask_standard", *systems[1:],
        *[f"eval_{m}_{s}" for s in systems for m in ("toxicity", "fluency")], "report"]
    does = {s["name"]: s["does"] for s in plan["stages"]}
    assert "seed 1: standard-influence mask → filter" in does["standard-seed1"] and "toxic queries only" in does["scores_standard"]
    text = cli("run", str(path), "--dry-run").stdout
    assert "ifguide: influence mask → penalty (λ = 1.5)" in text and "standard: standard-influence mask → filter" in text
    assert not workspace_dir.exists()


def test_an_arm_without_influence_needs_no_queries(cli, tmp_path):
    from ifguide_cli.core.pipeline.inputs import query_sets

    spec = spec_from_dict({"arms": [TWO_ARMS[1]]})
    assert query_sets(spec, stage_configs(spec)) == [("influence.toxic_queries", "tiny-queries-toxic")]
    assert query_sets(spec_from_dict({}), stage_configs(spec_from_dict({}))) == [
        ("influence.toxic_queries", "tiny-queries-toxic"), ("influence.safe_queries", "tiny-queries-safe")]


def test_the_tiny_preset_is_unchanged_by_the_comparison():
    spec = spec_from_dict(yaml.safe_load(preset_path("tiny").read_text()))
    assert spec.arms == () and spec.seeds == 1 and not spec.compares_arms


# ---- a small comparison end to end -----------------------------------------------------------------------
@pytest.fixture
def report_calls(monkeypatch):
    """The control `run` passes to the report (the checkpoint every arm is compared with)."""
    from ifguide_cli.core.report import build as report
    real, calls = report.build_report, []

    def build_report(*args, control=None, **kwargs):
        calls.append(control)
        return real(*args, control=control, **kwargs)

    monkeypatch.setattr(report, "build_report", build_report)
    return calls


@pytest.mark.slow
def test_two_arms_over_two_seeds_end_to_end(cli, tmp_path, workspace_dir, report_calls):
    from ifguide_cli.core.store.workspace import Workspace

    path = _write(tmp_path, SMALL)
    result = cli("--json", "run", str(path), "--seeds", "2")
    assert result.exit_code == 0, result.stderr
    out = result.json
    stages, ws = out["stages"], Workspace(workspace_dir)
    assert out["seeds"] == [7, 8] and set(out["masks"]) == {"ifguide", "standard"}
    assert stages["scores"]["id"] != stages["scores_standard"]["id"]  # toxic − safe vs toxic only, one set of factors
    assert stages["mask_ifguide"]["id"] != stages["mask_standard"]["id"]
    masks = {arm: ws.get("masks", stages[f"mask_{arm}"]["id"]).summary for arm in ("ifguide", "standard")}
    assert masks["ifguide"]["differential"] is True and masks["standard"]["differential"] is False
    assert out["masks"]["standard"]["suppression"] == "filter" and out["masks"]["ifguide"]["tokens"] <= 300
    checkpoints = {}
    for seed in (7, 8):
        for system in ("control", "ifguide", "standard"):
            name = f"{system}-seed{seed}"
            art = ws.get("checkpoints", stages[name]["id"])
            checkpoints[name] = art
            assert art.config["mode"] == "finetune" and art.config["model"]["artifact_id"] == stages["baseline"]["id"]
            assert art.config["seed"] == seed and art.config["train"]["max_steps"] == 3 == art.summary["steps"]
            assert out["systems"][name]["checkpoint"] == art.id
            assert out["systems"][name]["toxicity_probability"] is not None and out["systems"][name]["perplexity"]
            assert {f"eval_toxicity_{name}", f"eval_fluency_{name}"} <= set(stages)
        control, ifguide, standard = (checkpoints[f"{s}-seed{seed}"] for s in ("control", "ifguide", "standard"))
        assert control.config["mask"] is None and ifguide.config["mask"] == stages["mask_ifguide"]["id"]
        assert ifguide.config["lambda"] == 1.5 and standard.config["lambda"] is None
        assert standard.summary["suppression"] == "filter" and ifguide.summary["suppression"] == "penalty"
        # the same options, seed and steps for all three: only λ (penalty) or the suppression mode (filter) differ
        shared = {k: v for k, v in control.config["train"].items() if k != "lam"}
        assert ifguide.config["train"] == {**shared, "lam": 1.5}
        assert standard.config["train"] == {**shared, "suppression": "filter"}
    assert report_calls == [checkpoints["control-seed7"].id]  # the report compares every arm with the control
    assert "arms" in out and "reduction" not in out
    plan = cli("--json", "run", str(path), "--seeds", "2", "--dry-run").json  # the plan finds every stage the run stored
    assert {s["name"]: s["reuse"] for s in plan["stages"]} == {k: v["id"] for k, v in stages.items()}


# ---- classifier and word-list arms, and the tiny-compare preset ----
def test_tiny_compare_preset(cli):
    from ifguide_cli.core.pipeline.reading import load_spec

    configs = stage_configs(load_spec(preset_path("tiny-compare")))
    assert [(a.name, a.source, a.suppression) for a in configs.arms] == [
        ("ifguide", "influence", "penalty"), ("standard", "standard-influence", "penalty"),
        ("clf-tokens", "classifier", "filter"), ("clf-docs", "classifier", "drop")]
    assert {a.mask.max_tokens for a in configs.arms} == {3000}  # the same budget for every arm
    assert (configs.arms[2].mask.level, configs.arms[3].mask.level) == ("token", "document")
    plan = cli("--json", "run", "--preset", "tiny-compare", "--dry-run").json
    assert plan["ready"] and plan["seeds"] == [0, 1, 2]
    assert {"mask_clf-tokens", "mask_clf-docs", "clf-docs-seed2", "eval_toxicity_clf-docs-seed0"} <= {
        s["name"] for s in plan["stages"]}
    assert {i["role"] for i in plan["inputs"]} >= {"arms[2].mask.classifier", "arms[3].mask.classifier"}


@pytest.mark.slow
def test_classifier_and_wordlist_arms_end_to_end(cli, tmp_path, workspace_dir, report_calls):
    from ifguide_cli.core.store.workspace import Workspace

    words = tmp_path / "words.txt"
    words.write_text("stupid\nidiot\nmoron\nloser\n")
    tree = {**SMALL, "arms": [
        {"name": "clf", "source": "classifier", "suppression": "filter", "mask": {"classifier": "profanity", "level": "token"}},
        {"name": "words", "source": "wordlist", "suppression": "drop", "mask": {"wordlist": str(words)}}]}
    result = cli("--json", "run", str(_write(tmp_path, tree)))
    assert result.exit_code == 0, result.stderr
    out, ws = result.json, Workspace(workspace_dir)
    assert "factors" not in out["stages"] and "scores" not in out["stages"]  # no influence arm: no influence stages
    clf, words_ckpt = (ws.get("checkpoints", out["stages"][name]["id"]) for name in ("clf", "words"))
    assert clf.config["mask"] == out["stages"]["mask_clf"]["id"] and clf.summary["suppression"] == "filter"
    assert words_ckpt.summary["suppression"] == "drop" and words_ckpt.summary["dropped_rows"] > 0
    assert out["masks"]["clf"]["tokens"] <= 300 and out["masks"]["words"]["tokens"] <= 300  # the mask section's budget
    assert set(out["systems"]) == {"baseline", "control", "clf", "words"}
    plan = cli("--json", "run", str(_write(tmp_path, tree)), "--dry-run").json  # the plan finds every stored stage
    assert {s["name"]: s["reuse"] for s in plan["stages"]} == {k: v["id"] for k, v in out["stages"].items()}
    words.write_text("stupid\nidiot\n")  # other words: that mask, its fine-tune and their evals would be new
    assert [s["name"] for s in cli("--json", "run", str(_write(tmp_path, tree)), "--dry-run").json["stages"]
            if s["status"] == "new"] == ["mask_words", "words", "eval_toxicity_words", "eval_fluency_words", "report"]


@pytest.mark.slow
def test_tiny_compare_runs_every_arm_against_the_control(cli):
    """The preset end to end over one seed (the preset's 3 seeds take ~3.5 min on 2 cores): every arm is compared
    with the control with intervals, and IF-Guide's penalty lowers toxicity beyond its interval."""
    result = cli("--json", "run", "--preset", "tiny-compare", "--seeds", "1")
    assert result.exit_code == 0, result.stderr
    out = result.json
    arms = {a["name"]: a for a in out["arms"]}
    assert {"ifguide", "standard", "clf-tokens", "clf-docs"} <= set(arms) and out["headline"]
    for name in ("ifguide", "standard", "clf-tokens", "clf-docs"):
        reduction = arms[name]["reduction"]["tp"]
        assert reduction["ci95"][0] <= reduction["value"] <= reduction["ci95"][1] and 0 <= reduction["p_value"] <= 1
        assert arms[name]["perplexity_cost"]["ci95"] is not None and arms[name]["mask"]["tokens"] <= 3000
    assert arms["ifguide"]["reduction"]["tp"]["ci95"][0] > 0 and arms["ifguide"]["mask"]["suppression"] == "penalty"
    assert arms["clf-docs"]["mask"]["suppression"] == "drop" and arms["clf-tokens"]["mask"]["suppression"] == "filter"
