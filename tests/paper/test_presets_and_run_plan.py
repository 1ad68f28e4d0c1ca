"""The paper's recipe (presets == the reference's values, each with a source) and the run plan's arithmetic."""

from __future__ import annotations

import json
import math

import pytest
import yaml

from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.paper import plan, recipe
from ifguide_cli.core.pipeline.spec import preset_path

TRAIN_TOKENS = 7_628 * 256 * 2_048  # 3,999,268,864
DATA_TOKENS = 488_282 * 2_048  # 1,000,001,536


def _preset(name: str) -> dict:
    return yaml.safe_load(preset_path(name).read_text())


def _leaves(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        out.update(_leaves(value, path + ".") if isinstance(value, dict) else {path: value})
    return out


# ---- recipe and presets ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(recipe.SCENARIOS))
def test_every_preset_value_is_the_references_with_its_type(name):
    tree = _preset(name)
    for setting in recipe.settings(name):
        if setting.key is not None:
            value = recipe.lookup(tree, setting.key)
            assert value == setting.value and type(value) is type(setting.value), (setting.key, value, setting.value)
    assert tree["scenario"] == recipe.SCENARIOS[name]


@pytest.mark.parametrize("name", list(recipe.SCENARIOS))
def test_every_preset_value_has_a_source(name):
    keys = {s.key for s in recipe.settings(name)}
    leaves = _leaves(_preset(name))
    unsourced = [k for k in leaves if k not in keys and k != "scenario" and not k.startswith("ifguide.train.")]
    assert unsourced == []
    for setting in recipe.settings(name):
        assert setting.source.startswith(("src/", "README.md")), setting


def test_the_ifguide_model_is_trained_with_the_baseline_recipe():
    tree = _preset("paper")
    assert tree["ifguide"]["train"] == {}  # {} = the baseline's options, from scratch, with the mask
    assert tree["baseline"]["train"]["max_steps"] == math.ceil(4 * (math.ceil(488_282 / 8) // 32))


@pytest.mark.parametrize("name", list(recipe.SCENARIOS))
def test_each_value_line_names_its_source(name):
    """The preset file is the documentation: the comment on each value's line is the reference line it comes from."""
    lines = {}
    stack: list[tuple[int, str]] = []
    for line in preset_path(name).read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        indent, key = len(line) - len(line.lstrip()), line.strip().split(":", 1)[0]
        stack = [(i, k) for i, k in stack if i < indent] + [(indent, key)]
        lines[".".join(k for _, k in stack)] = line
    for setting in recipe.settings(name):
        if setting.key is not None:
            assert f"# {setting.source}" in lines[setting.key], (setting.key, lines[setting.key])


def test_recipe_rows_are_json_and_name_the_reference():
    rows = recipe.rows("paper")
    assert json.loads(json.dumps(rows)) == rows
    by_name = {(r["section"], r["name"]): r for r in rows}
    assert by_name[("scores", "damping")]["value"] == 1e-8
    assert by_name[("train", "learning rate")] == {"section": "train", "name": "learning rate", "value": 6e-4,
                                                   "source": "src/scripts/train.sh:14", "key": "baseline.train.learning_rate",
                                                   "note": ""}
    assert "e138984" in recipe.REFERENCE
    with pytest.raises(IfguideError, match="unknown paper preset"):
        recipe.settings("tiny")
    with pytest.raises(KeyError):
        recipe.lookup({"a": {}}, "a.b")


# ---- plan ----------------------------------------------------------------------------------------
def test_parameter_counts_match_the_published_ones():
    assert {m: plan.arch(m).params for m in ("pythia-160m", "pythia-410m", "pythia-1b", "pythia-2.8b")} == {
        "pythia-160m": 162_322_944, "pythia-410m": 405_334_016, "pythia-1b": 1_011_781_632, "pythia-2.8b": 2_775_208_960}
    llama = plan.arch("llama-3.2-1b")
    assert plan.Arch("llama", 2_048, 16, 8_192, vocab=128_256, kv_hidden=512, tied=True).params == 1_235_814_400
    assert llama.params == 1_235_814_400 - (128_256 - 50_304) * 2_048  # the Pythia vocabulary, as the reference trains it


def test_factor_bytes_by_module_shapes():
    # one GPT-NeoX layer, hidden 2, MLP 4: (in+1, out) = (3, 6), (3, 2), (3, 4), (5, 2)
    tiny = plan.Arch("gpt_neox", 2, 1, 4, vocab=10)
    per_module = [2 * a * a + 2 * g * g + a + g + a * g for a, g in ((3, 6), (3, 2), (3, 4), (5, 2))]
    assert plan.factor_bytes(tiny, 4) == 4 * sum(per_module) == 4 * 298


def test_paper_plan_tokens_and_gpu_hours_from_the_anchors():
    p = plan.plan_for("paper")
    stages = {s.name: s for s in p.stages}
    train = stages["train baseline (7,628 steps)"]
    assert train.tokens == TRAIN_TOKENS and train.tokens_per_s == 260_000
    assert train.gpu_hours == pytest.approx(TRAIN_TOKENS / 260_000 / 3600)
    factors, scores = stages["EK-FAC factors (3 passes, all rows)"], stages["per-token scores (one pass)"]
    assert factors.tokens == scores.tokens == DATA_TOKENS
    assert factors.gpu_hours == pytest.approx(DATA_TOKENS / 34_000 / 3600)  # ≈ 8.2 h
    assert scores.gpu_hours == pytest.approx(DATA_TOKENS / 123_000 / 3600)  # ≈ 2.3 h
    assert stages["query gradients"].tokens == 84_112 * 256
    assert stages["evaluation (2 models)"].tokens == 2 * (10_000 * 25 * (256 + 20) + 4_883 * 2_048 + 4_860 * 512)
    assert stages["validation during training (30 passes)"].tokens == 30 * 24_415 * 2_048
    assert 18 < p.gpu_hours < 21 and p.wall_hours == p.gpu_hours
    assert plan.plan_for("paper", gpus=8).wall_hours == pytest.approx(p.gpu_hours / 8)


def test_other_models_scale_by_parameter_count():
    big = plan.plan_for("paper-finetune")
    stages = {s.name: s for s in big.stages}
    ratio = plan.arch("pythia-160m").params / plan.arch("pythia-2.8b-deduped").params
    assert stages["EK-FAC factors (3 passes, all rows)"].tokens_per_s == pytest.approx(34_000 * ratio)
    assert stages["train control + IF-Guide (2,000 steps each)"].tokens == 2 * 2_000 * 256 * 2_048
    assert "evaluation (3 models)" in stages and not any(s.startswith("validation") for s in stages)


def test_disk_needs():
    disk = {n.name: n for n in plan.plan_for("paper").disk}
    assert disk["per-token scores"].bytes == DATA_TOKENS * 4  # 4.0 GB in float32
    assert plan.build_plan(plan.PlanInputs.paper(score_value_bytes=2)).disk[3].bytes == DATA_TOKENS * 2  # 2.0 GB in bf16
    assert disk["final weights"].bytes == 2 * 162_322_944 * 2
    assert disk["checkpoints during training (peak)"].bytes == 2 * 8 * 162_322_944 * 2 * 3
    assert disk["EK-FAC factors"].bytes == plan.factor_bytes("pythia-160m", 2)
    assert disk["hub download: OpenWebText chunks"].bytes is None


def test_plan_renders_as_rows_and_json():
    p = plan.plan_for("paper")
    rows = p.rows()
    assert rows[-1]["stage"] == "total" and rows[-1]["GPU-hours"] == f"{p.gpu_hours:,.1f}"
    assert rows[0]["tokens"] == "4.00B"
    assert {r["item"]: r["size"] for r in p.disk_rows()}["per-token scores"] == "4.00 GB"
    data = p.to_json()
    assert json.loads(json.dumps(data)) == data and data["params"] == 162_322_944 and len(data["assumptions"]) == 3
    assert plan.human(1_234) == "1.23k" and plan.human(12) == "12"
    with pytest.raises(ValueError):
        plan.build_plan(plan.PlanInputs(gpus=0))
    with pytest.raises(ValueError):
        plan.plan_for("tiny")
    with pytest.raises(ValueError):
        plan.arch("gpt-2")


def test_arms_and_seeds_multiply_the_trainings_and_evaluations():
    classic = {s.name: s for s in plan.plan_for("paper").stages}
    arms = plan.build_plan(plan.PlanInputs.paper(arms=2, seeds=3, score_passes=2))
    stages = {s.name: s for s in arms.stages}
    train = stages["train control + 2 arm(s) × 3 seed(s) (7,628 steps each)"]
    assert train.tokens == 9 * TRAIN_TOKENS  # (control + 2 arms) × 3 seeds, besides the baseline
    assert stages["train baseline (7,628 steps)"].tokens == TRAIN_TOKENS
    assert stages["per-token scores (one pass) × 2"].tokens == 2 * DATA_TOKENS  # differential and toxic-only
    assert stages["evaluation (10 models)"].tokens == 5 * classic["evaluation (2 models)"].tokens
    assert arms.inputs.trained_models == 10 and train.gpu_hours == pytest.approx(9 * classic["train IF-Guide (7,628 steps)"].gpu_hours)
