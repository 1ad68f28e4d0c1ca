"""`ifguide run`: pipeline files, and the tiny preset end to end (the paper's effect at toy scale)."""

from __future__ import annotations

import time

import pytest
from clikit import assert_one_line_error

from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.pipeline.reading import load_spec, spec_from_dict
from ifguide_cli.core.pipeline.runner import reduction_factor
from ifguide_cli.core.pipeline.spec import BaselineSpec, EvalSpec, FinetuneSpec, InfluenceSpec, PipelineSpec, preset_path
from ifguide_cli.core.pipeline.stage_configs import stage_configs


def test_tiny_preset_parses():
    spec = load_spec(preset_path("tiny"))
    assert spec.model == "tiny" and spec.data == "tiny"
    assert spec.eval.classifier == "profanity" and spec.finetune.lam == 1.5
    assert spec.mask["threshold"] == 0.99


def test_tiny_preset_is_the_typed_configuration():
    """The preset file and the typed sections say the same thing, down to each stage's options."""
    spec = load_spec(preset_path("tiny"))
    assert spec == PipelineSpec(
        baseline=BaselineSpec(checkpoint=None, train={}),
        influence=InfluenceSpec(toxic_queries="tiny-queries-toxic", safe_queries="tiny-queries-safe",
                                factors={"strategy": "ekfac"}, scores={}),
        mask={"threshold": 0.99, "window": 1, "max_tokens": 3000},
        finetune=FinetuneSpec(lam=1.5, train={}),
        eval=EvalSpec(prompts="tiny-prompts", classifier="profanity", samples=10, max_new_tokens=20, top_p=0.9, seed=0))
    configs = stage_configs(spec)
    assert configs.factors.strategy == "ekfac" and configs.mask.max_tokens == 3000
    assert configs.generation.samples == 10 and configs.baseline_train == {} == configs.finetune_train


def test_unknown_keys_are_errors_not_silent_defaults():
    with pytest.raises(IfguideError, match="unknown key"):
        spec_from_dict({"mask": {"treshold": 0.9}})
    with pytest.raises(IfguideError, match="unknown section"):
        spec_from_dict({"evals": {}})
    with pytest.raises(IfguideError, match="unknown key"):
        spec_from_dict({"eval": {"sample": 3}})


@pytest.mark.parametrize(("section", "needle"), [
    ({"finetune": {"lambda": -1}}, "finetune: --lambda must be in [0, inf)"),
    ({"finetune": {"lambda": float("inf")}}, "--lambda must be a finite number"),
    ({"finetune": {"lambda": 1, "train": {"lambda": 2}}}, "set λ as finetune.lambda"),
    ({"finetune": {"train": {"lr": -1}}}, "finetune.train: --lr must be in (0"),
    ({"finetune": {"train": {"lerning_rate": 1e-3}}}, "unknown option 'lerning_rate' in t.yaml: finetune.train"),
    ({"baseline": {"train": {"max_steps": 0}}}, "baseline.train: --max-steps"),
    ({"baseline": {"train": [1]}}, "train must be a mapping"),
    ({"influence": {"factors": {"strategy": "nope"}}}, ("t.yaml: influence.factors: ", "'nope'")),
    ({"influence": {"scores": {"damping": -1.0}}}, "influence.scores: --damping"),
    ({"influence": {"scores": {"query_low_rank": 8}}}, "--query-low-rank cannot be combined with --safe-queries"),
    ({"mask": {"threshold": 1.5}}, "t.yaml: mask: --threshold"),
    ({"eval": {"top_p": 2}}, "t.yaml: eval: --top-p"),
    ({"eval": {"num_prompts": 0}}, "t.yaml: eval: --num-prompts must be in [1, inf)"),
    ({"eval": {"samples": "many"}}, "--samples must be a whole number"),
    ({"model": 3}, "t.yaml: --model must be a string"),
    ({"influence": "yes"}, "t.yaml: influence must be a mapping"),
])
def test_every_section_is_checked_when_the_file_is_read(section, needle):
    with pytest.raises(IfguideError) as err:
        spec_from_dict(section, "t.yaml")
    for part in (needle,) if isinstance(needle, str) else needle:
        assert part in err.value.one_line()
    assert err.value.exit_code == 2


def test_empty_sections_mean_defaults():
    spec = spec_from_dict({"baseline": None, "influence": {"factors": None}, "mask": None, "finetune": {"train": None}})
    assert spec == PipelineSpec()


def test_reduction_factor():
    assert reduction_factor(0.5, 0.1, 100) == (pytest.approx(5.0), False)
    # no prompt left toxic: TP < 1/100, so the reduction is at least 0.5 × 100
    assert reduction_factor(0.5, 0.0, 100) == (pytest.approx(50.0), True)
    assert reduction_factor(None, 0.1, 10) == (None, False)
    assert reduction_factor(0.0, 0.0, 10) == (None, False)  # nothing to reduce


def test_run_needs_a_file_or_a_preset(cli, tmp_path):
    assert_one_line_error(cli("run"), "give either a PIPELINE.yaml file or --preset", code=2)
    assert_one_line_error(cli("run", "--preset", "huge"), "unknown preset 'huge'", code=2)
    assert_one_line_error(cli("run", str(tmp_path / "none.yaml")), "does not exist", code=2)
    bad = tmp_path / "bad.yaml"
    bad.write_text("mask: {threshold: 0.9, widow: 2}\n")
    assert_one_line_error(cli("run", str(bad)), "widow", code=2)


def test_a_bad_value_is_refused_before_anything_trains(cli, tmp_path):
    """`finetune: {lambda: -1}` is only used by the sixth stage: it must fail before the first one runs."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("finetune: {lambda: -1}\n")
    start = time.perf_counter()
    assert_one_line_error(cli("run", str(bad)), "finetune: --lambda must be in [0, inf); got -1", code=2)
    assert time.perf_counter() - start < 20  # the baseline alone trains for about a minute
    assert cli("--json", "workspace", "ls").json["artifacts"] == []


def test_a_continuation_that_cannot_fit_the_context_is_refused_before_anything_trains(cli):
    """The eval stage checks --max-new-tokens against the model's context; a pipeline must not train for hours
    first (tiny's context is 128 tokens)."""
    for dry in ((), ("--dry-run",)):
        result = cli("run", "--preset", "tiny", "--set", "eval.max_new_tokens=128", *dry)
        assert_one_line_error(result, "eval.max_new_tokens 128 does not fit", "context of 128", code=2)
    assert cli("--json", "workspace", "ls").json["artifacts"] == []
    assert cli("run", "--preset", "tiny", "--set", "eval.max_new_tokens=127", "--dry-run").exit_code == 0


def test_print_config(cli):
    result = cli("--json", "run", "--preset", "tiny", "--print-config")
    assert result.exit_code == 0 and "toxic_queries" in result.json["yaml"]
    assert result.json["yaml"] == preset_path("tiny").read_text(encoding="utf-8")
    assert result.json["warnings"] == []


@pytest.mark.slow
def test_tiny_preset_shows_the_effect_and_reruns_from_the_store(cli):
    first = cli("--json", "run", "--preset", "tiny")
    assert first.exit_code == 0, first.stderr
    out = first.json
    log = first.stderr.splitlines()  # a log of a --json run shows each stage starting and ending
    assert "▶ baseline" in log and any(line.startswith("  checkpoint ") and "done in" in line for line in log)
    assert set(out["stages"]) >= {"baseline", "factors", "scores", "mask", "control", "ifguide", "report"}
    assert out["mask"]["precision_at_k"] >= 0.9
    control, ifguide = out["control"], out["ifguide"]
    assert control["toxicity_probability"] > 0.2  # the baseline really learned the planted insults
    assert out["reduction"] >= 3.0
    assert ifguide["perplexity"] <= 1.10 * control["perplexity"]
    again = cli("--json", "run", "--preset", "tiny").json
    assert all(stage["reused"] for stage in again["stages"].values())
    assert again["reduction"] == out["reduction"]
    plan = cli("--json", "run", "--preset", "tiny", "--dry-run").json  # the plan finds every stage the run stored
    assert {s["name"]: s["reuse"] for s in plan["stages"]} == {k: v["id"] for k, v in out["stages"].items()}


def test_print_config_of_a_missing_file_is_one_line(cli, tmp_path):
    result = cli("run", str(tmp_path / "nope.yaml"), "--print-config")
    assert_one_line_error(result, "does not exist", code=2)
    assert "internal error" not in result.stderr


# ---- scenario pretrain: the IF-Guide model trained from scratch, on a tiny stand-in ---------------------
PRETRAIN = {
    "scenario": "pretrain", "model": "tiny", "data": "tiny",
    "corpus": {"max_examples": 192},
    "baseline": {"train": {"max_steps": 4, "batch_size": 16, "eval_docs": 16, "save_steps": 2, "seed": 5}},
    "influence": {"toxic_queries": "tiny-queries-toxic", "safe_queries": "tiny-queries-safe", "factors": {"strategy": "ekfac"}},
    "mask": {"threshold": 0.9, "window": 1, "max_tokens": 300},
    "ifguide": {"lambda": 1.5},
    "eval": {"prompts": "tiny-prompts", "classifier": "profanity", "num_prompts": 6, "samples": 2, "max_new_tokens": 5,
             "lambada": None, "fluency": {"ppl_docs": 8}},
}


@pytest.mark.slow
def test_pretrain_scenario_end_to_end_and_its_dry_run_reuses_every_stage(cli, tmp_path, workspace_dir):
    import yaml

    from ifguide_cli.core.store.workspace import Workspace

    path = tmp_path / "pretrain.yaml"
    path.write_text(yaml.safe_dump(PRETRAIN))
    result = cli("--json", "run", str(path), "--set", "ifguide.lambda=2")
    assert result.exit_code == 0, result.stderr
    out = result.json
    assert out["scenario"] == "pretrain" and out["reduction_of"] == "baseline"
    assert list(out["stages"]) == ["data", "baseline", "factors", "scores", "mask", "ifguide", "eval_toxicity_baseline",
                                   "eval_fluency_baseline", "eval_toxicity_ifguide", "eval_fluency_ifguide", "report"]
    assert out["pipeline"]["overrides"] == ["ifguide.lambda=2"] and out["pipeline"]["config"]["ifguide"]["lambda"] == 2
    assert out["ifguide"]["lambada_accuracy"] is None and out["ifguide"]["perplexity"] is not None  # lambada: null
    assert out["mask"]["precision_at_k"] is not None and out["ifguide"]["prompts"] == 6
    ws = Workspace(workspace_dir)
    baseline, ifguide = (ws.get("checkpoints", out["stages"][k]["id"]) for k in ("baseline", "ifguide"))
    # from scratch, with the baseline's recipe (seed, steps, data order) and the penalty on the mask
    assert ifguide.config["mode"] == "pretrain" and ifguide.config["mask"] == out["stages"]["mask"]["id"]
    assert ifguide.config["lambda"] == 2 and ifguide.config["model"] == baseline.config["model"]
    assert {**ifguide.config["train"], "lam": None} == {**baseline.config["train"], "lam": None}
    assert ifguide.config["dataset"] == baseline.config["dataset"] == out["stages"]["data"]["id"]
    plan = cli("--json", "run", str(path), "--set", "ifguide.lambda=2", "--dry-run").json
    assert {s["name"]: s["reuse"] for s in plan["stages"]} == {k: v["id"] for k, v in out["stages"].items()}
    changed = cli("--json", "run", str(path), "--dry-run").json  # λ = 1.5: the IF-Guide model and what follows are new
    assert [s["name"] for s in changed["stages"] if s["status"] == "new"] == [
        "ifguide", "eval_toxicity_ifguide", "eval_fluency_ifguide", "report"]
