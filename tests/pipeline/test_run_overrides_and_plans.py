"""`ifguide run`: --set overrides, --dry-run plans, inputs checked before any stage, skipped evals, scenarios, paper presets."""

from __future__ import annotations

import time

import pytest
import torch
import yaml
from clikit import assert_one_line_error

from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.paper import plan, recipe
from ifguide_cli.core.pipeline.reading import read_pipeline, spec_from_dict
from ifguide_cli.core.pipeline.spec import apply_overrides, parse_value, preset_path
from ifguide_cli.core.training.config import FIELDS

# the paper presets use knobs another branch adds (bf16 weights, best checkpoint, the LAMBADA last-token metric)
PAPER_KNOBS = {"weights_dtype", "best_checkpoint"} <= set(FIELDS)
needs_paper_knobs = pytest.mark.skipif(not PAPER_KNOBS, reason="the paper presets' training knobs are not in this build")


def _write(tmp_path, tree: dict, name: str = "p.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


def _tree(**sections) -> dict:
    """The tiny preset with some sections replaced."""
    return {**yaml.safe_load(preset_path("tiny").read_text()), **sections}


def _without_paper_knobs(name: str) -> dict:
    """A paper preset without the keys this build does not know yet (see PAPER_KNOBS)."""
    tree = yaml.safe_load(preset_path(name).read_text())
    section = tree["baseline"] if "train" in tree["baseline"] else tree["finetune"]
    for key in ("weights_dtype", "best_checkpoint"):
        section["train"].pop(key, None)
    tree["eval"].pop("fluency")
    return tree


# ---- --set -------------------------------------------------------------------------------------------
def test_overrides_set_nested_keys_with_yaml_values():
    raw = {"mask": {"threshold": 0.99}, "finetune": {"train": {}}}
    out = apply_overrides(raw, ["mask.threshold=0.9", "finetune.lambda=2", "finetune.train.lr=1e-4",
                                "eval.lambada=null", "influence.factors.strategy=kfac", "model=pythia-160m"])
    assert out == {"mask": {"threshold": 0.9}, "finetune": {"train": {"lr": 1e-4}, "lambda": 2},
                   "eval": {"lambada": None}, "influence": {"factors": {"strategy": "kfac"}}, "model": "pythia-160m"}
    assert raw == {"mask": {"threshold": 0.99}, "finetune": {"train": {}}}  # the file's mapping is untouched
    assert parse_value("1e-4") == 1e-4 and parse_value("true") is True and parse_value("") is None
    assert parse_value("[a, b]") == ["a", "b"] and parse_value("-inf") == float("-inf") and parse_value("info") == "info"


def test_an_override_under_a_yaml_alias_changes_only_its_own_key():
    shared = {"lr": 1.0}
    out = apply_overrides({"baseline": {"train": shared}, "ifguide": {"train": shared}}, ["ifguide.train.lr=2"])
    assert out["baseline"]["train"] == {"lr": 1.0} and out["ifguide"]["train"] == {"lr": 2}


def test_set_changes_the_config_and_round_trips_through_print_config(cli, tmp_path):
    result = cli("--json", "run", "--preset", "tiny", "--set", "finetune.lambda=2", "--set", "mask.max_tokens=500",
                 "--print-config")
    assert result.exit_code == 0, result.stderr
    assert result.json["overrides"] == ["finetune.lambda=2", "mask.max_tokens=500"]
    path = tmp_path / "my.yaml"
    path.write_text(result.json["yaml"])
    spec = read_pipeline(path).spec
    assert spec.finetune.lam == 2 and spec.mask["max_tokens"] == 500 and spec.eval.classifier == "profanity"


@pytest.mark.parametrize(("override", "needles"), [
    ("mask.treshold=0.9", ("unknown key(s) 'treshold'", "tiny.yaml: mask")),
    ("finetune.lambda=inf", ("--lambda must be a finite number",)),
    ("finetune.lambda=-1", ("finetune: --lambda must be in [0, inf)",)),
    ("finetune.train.lerning_rate=1e-3", ("unknown option 'lerning_rate'",)),
    ("evals.samples=3", ("unknown section(s) 'evals'",)),
    ("nokey", ("is not SECTION.KEY=VALUE",)),
    ("model.size=1", ("model is 'tiny', not a section",)),
    ("eval.top_p=[1", ("is not valid YAML",)),
])
def test_a_bad_override_is_one_line(cli, override, needles):
    assert_one_line_error(cli("run", "--preset", "tiny", "--set", override, "--dry-run"), *needles, code=2)


# ---- --dry-run --------------------------------------------------------------------------------------
def test_dry_run_lists_stages_and_inputs_and_writes_nothing(cli, workspace_dir):
    result = cli("--json", "run", "--preset", "tiny", "--dry-run")
    assert result.exit_code == 0, result.stderr
    plan_ = result.json
    assert plan_["dry_run"] and plan_["ready"] and plan_["scenario"] == "finetune" and plan_["estimate"] is None
    assert [s["name"] for s in plan_["stages"]] == [
        "data", "baseline", "factors", "scores", "mask", "control", "ifguide",
        *[f"eval_{m}_{s}" for s in ("baseline", "control", "ifguide") for m in ("toxicity", "fluency")], "report"]
    assert {s["status"] for s in plan_["stages"]} == {"new"}
    inputs = {i["role"]: i for i in plan_["inputs"]}
    assert inputs["eval.classifier"]["available"] and inputs["data"]["where"] == "packaged"
    assert inputs["eval.lambada"]["ref"] == "tiny-lambada"  # `auto`: the model's default
    assert not workspace_dir.exists()


def test_dry_run_says_what_it_would_reuse(cli, workspace_dir):
    from ifguide_cli.core.data import resolve_corpus
    from ifguide_cli.core.models import resolve_model
    from ifguide_cli.core.store.workspace import Workspace

    ws = Workspace(workspace_dir)
    dataset = resolve_corpus(ws, "tiny", resolve_model("tiny"), None).artifact
    before = sorted(p.relative_to(workspace_dir) for p in workspace_dir.rglob("*"))
    stages = {s["name"]: s for s in cli("--json", "run", "--preset", "tiny", "--dry-run").json["stages"]}
    assert stages["data"]["reuse"] == dataset.id and stages["baseline"]["status"] == "new"
    assert sorted(p.relative_to(workspace_dir) for p in workspace_dir.rglob("*")) == before
    text = cli("run", "--preset", "tiny", "--dry-run").stdout
    assert f"reuse {dataset.id}" in text and "inputs" in text and "✓ eval.prompts: tiny-prompts" in text


ON_A_GPU_BF16_TRAINS = pytest.mark.skipif(torch.cuda.is_available(), reason="bf16 weights train on a GPU")


# ---- inputs: checked before the first stage ------------------------------------------------------------
@pytest.mark.parametrize(("changes", "needles"), [
    ({"eval": {"prompts": "./no-such-prompts.jsonl"}}, ("eval.prompts './no-such-prompts.jsonl'", "no such file")),
    ({"eval": {"lambada": "lambada"}}, ("eval.lambada 'lambada'", "EleutherAI/lambada_openai is not in the Hugging Face "
                                                                  "cache and the hub is offline", "hf download")),
    ({"baseline": {"checkpoint": "tiny"}}, ("baseline.checkpoint 'tiny'", "without pretrained weights")),
    ({"influence": {"toxic_queries": "nope-queries"}}, ("influence.toxic_queries 'nope-queries'", "unknown dataset")),
    ({"eval": {"classifier": "detoxify-unbiased"}}, ("eval.classifier 'detoxify-unbiased'", "not available offline")),
    pytest.param({"baseline": {"train": {"weights_dtype": "bf16", "precision": "bf16"}}},
                 ("baseline.train.weights_dtype 'bf16'", "needs a CUDA GPU"), marks=ON_A_GPU_BF16_TRAINS),
])
def test_a_missing_input_fails_before_any_stage(cli, tmp_path, workspace_dir, changes, needles):
    tree = _tree()
    for section, values in changes.items():
        tree[section] = {**tree.get(section, {}), **values}
    start = time.perf_counter()
    line = assert_one_line_error(cli("run", str(_write(tmp_path, tree))), *needles, code=2)
    assert time.perf_counter() - start < 20 and "1 input(s)" in line  # ~2 s on an idle machine; the baseline takes minutes
    assert not workspace_dir.exists()  # nothing ran, nothing was written
    planned = cli("run", str(_write(tmp_path, tree)), "--dry-run")  # the plan, with the missing input marked
    role = needles[0].split()[0]
    assert planned.exit_code == 2 and f"✗ {role}" in planned.stdout and f"not available: {role}" in planned.stderr


def test_several_missing_inputs_are_named_in_one_line(cli, tmp_path):
    tree = _tree(eval={**_tree()["eval"], "prompts": "gone.jsonl", "lambada": "lambada"})
    line = assert_one_line_error(cli("run", str(_write(tmp_path, tree))), "2 input(s)", "eval.prompts", "eval.lambada")
    assert "gone.jsonl" in line


# ---- skipping evaluations ----------------------------------------------------------------------------
def test_each_evaluation_can_be_skipped(cli, tmp_path):
    from ifguide_cli.core.models import resolve_model
    from ifguide_cli.core.pipeline.runner import fluency_config

    spec = spec_from_dict({"eval": {"lambada": None}})
    cfg = fluency_config(spec.eval, {}, resolve_model("tiny"))
    assert cfg.no_lambada and cfg.lambada is None and cfg.ppl_data == "tiny-heldout"
    assert fluency_config(spec_from_dict({"eval": {"lambada": None, "ppl_data": None}}).eval, {}, resolve_model("tiny")) is None
    tree = _tree(eval={**_tree()["eval"], "toxicity": False, "ppl_data": None, "fluency": {"ppl_docs": 5}})
    plan_ = cli("--json", "run", str(_write(tmp_path, tree)), "--dry-run").json
    names = [s["name"] for s in plan_["stages"]]
    assert names[-1] == "report" and not any("toxicity" in n for n in names) and "eval_fluency_ifguide" in names
    assert {i["role"] for i in plan_["inputs"]}.isdisjoint({"eval.prompts", "eval.classifier", "eval.ppl_data"})
    tree["eval"]["lambada"] = None
    assert not any(s["name"].startswith(("eval", "report")) for s in
                   cli("--json", "run", str(_write(tmp_path, tree)), "--dry-run").json["stages"])


def test_fluency_options_name_their_place():
    with pytest.raises(IfguideError, match=r"eval.fluency: set eval.lambada, not lambada here"):
        spec_from_dict({"eval": {"fluency": {"lambada": "x"}}})
    with pytest.raises(IfguideError, match=r"eval.fluency: --ppl-docs"):
        spec_from_dict({"eval": {"fluency": {"ppl_docs": 0}}})
    with pytest.raises(IfguideError, match=r"corpus: --layout must be one of"):
        spec_from_dict({"corpus": {"layout": "rows"}})


# ---- scenarios --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("tree", "needle"), [
    ({"scenario": "pretrain", "baseline": {"checkpoint": "x"}}, "baseline.checkpoint does not apply"),
    ({"scenario": "pretrain", "finetune": {"lambda": 2}}, "finetune does not apply: scenario pretrain has no fine-tunes"),
    ({"ifguide": {"lambda": 2}}, "ifguide does not apply: scenario finetune"),
    ({"scenario": "pretrain", "ifguide": {"train": {"lambda": 2}}}, "set λ as ifguide.lambda"),
    ({"scenario": "pretrain", "eval": {"evaluate_baseline": False}}, "eval.evaluate_baseline: false does not apply"),
    ({"scenario": "scratch"}, "--scenario must be one of finetune, pretrain"),
])
def test_scenario_rules(tree, needle):
    with pytest.raises(IfguideError) as err:
        spec_from_dict(tree, "t.yaml")
    assert needle in err.value.one_line() and err.value.exit_code == 2


def test_the_ifguide_model_takes_the_baselines_recipe_with_its_changes():
    from ifguide_cli.core.pipeline.stage_configs import stage_configs

    spec = spec_from_dict({"scenario": "pretrain", "baseline": {"train": {"max_steps": 5, "seed": 3}},
                           "ifguide": {"lambda": 2, "train": {"max_steps": 7}}})
    configs = stage_configs(spec)
    assert configs.ifguide_train == {"max_steps": 7, "seed": 3} and spec.penalty.lam == 2 and configs.finetune_train == {}


# ---- the paper presets ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(recipe.SCENARIOS))
def test_paper_presets_print_the_reference_settings(cli, name):
    text = cli("run", "--preset", name, "--print-config").stdout
    assert text == preset_path(name).read_text()  # with a source comment on every line
    data = cli("--json", "run", "--preset", name, "--print-config").json
    assert data["reference"] == recipe.REFERENCE and data["settings"] == recipe.rows(name)
    by_key = {s["key"]: s for s in data["settings"] if s["key"]}
    assert by_key["influence.scores.damping"]["value"] == 1e-8 and by_key["mask.max_tokens"]["value"] == 20_000_000


@needs_paper_knobs
@pytest.mark.parametrize("name", list(recipe.SCENARIOS))
def test_paper_presets_round_trip_into_run(cli, tmp_path, name):
    path = tmp_path / f"{name}.yaml"
    path.write_text(cli("run", "--preset", name, "--print-config").stdout)
    assert read_pipeline(path).spec == read_pipeline(preset_path(name)).spec


@pytest.mark.parametrize("name", list(recipe.SCENARIOS))
def test_paper_dry_run_gives_the_plan_and_estimate(cli, tmp_path, name):
    args = ("--preset", name) if PAPER_KNOBS else (str(_write(tmp_path, _without_paper_knobs(name), f"{name}.yaml")),)
    result = cli("--json", "run", *args, "--dry-run")
    assert result.exit_code == 2  # offline here: the hub inputs are missing, and the plan says which
    data = result.json
    assert not data["ready"] and "data" in data["missing"] and "error:" in result.stderr
    reference = plan.plan_for(name).to_json()
    for key in ("scenario", "model", "params", "stages", "gpu_hours"):
        assert data["estimate"][key] == reference[key], key
    if PAPER_KNOBS:
        assert data["estimate"]["disk"] == reference["disk"]
    text = cli("run", *args, "--dry-run").stdout
    assert "GPU-hours" in text and "on 8" in text and "per-token scores" in text


def test_set_changes_the_estimate(cli, tmp_path):
    path = _write(tmp_path, _without_paper_knobs("paper"))
    data = cli("--json", "run", str(path), "--dry-run", "--set", "baseline.train.max_steps=100").json
    assert data["estimate"]["stages"][0]["tokens"] == 100 * 256 * 2048
    assert data["overrides"] == ["baseline.train.max_steps=100"]


def test_the_row_length_is_set_once():
    from ifguide_cli.core.pipeline.stage_configs import stage_configs

    spec = spec_from_dict({"baseline": {"train": {"seq_len": 32}}, "finetune": {"train": {"seq-len": 32}}})
    assert stage_configs(spec).corpus == {"seq_len": 32}
    with pytest.raises(IfguideError, match=r"the row length is set twice: corpus.seq_len 64, baseline.train.seq_len 32"):
        spec_from_dict({"corpus": {"seq_len": 64}, "baseline": {"train": {"seq_len": 32}}})


def test_a_checkpoints_tokenizer_is_in_its_folder(workspace_dir):
    """A baseline checkpoint of a hub-tokenizer model needs no hub access: its tokenizer was saved with it."""
    from ifguide_cli.core.models import resolve_model
    from ifguide_cli.core.pipeline.inputs import tokenizer_input
    from ifguide_cli.core.store.workspace import Workspace

    ws = Workspace(workspace_dir)
    art, _ = ws.create("checkpoints", {"tokenizer": "EleutherAI/pythia-160m", "family": "gpt_neox"}, [], lambda ctx: {})
    item = tokenizer_input(ws, None, resolve_model(art.id, ws))
    assert item.available and art.id in item.where
    assert not tokenizer_input(ws, None, resolve_model("pythia-160m", ws)).available  # offline, not cached


def test_the_estimate_counts_every_arm_and_seed(cli, tmp_path):
    tree = {**_without_paper_knobs("paper"), "seeds": 2, "arms": [
        {"name": "ifguide", "source": "influence", "suppression": "penalty"},
        {"name": "standard", "source": "standard-influence", "suppression": "penalty"}]}
    names = [s["name"] for s in cli("--json", "run", str(_write(tmp_path, tree)), "--dry-run").json["estimate"]["stages"]]
    assert "train control + 2 arm(s) × 2 seed(s) (7,628 steps each)" in names
    assert "per-token scores (one pass) × 2" in names and "evaluation (7 models)" in names
