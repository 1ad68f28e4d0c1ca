"""The paper plan with a proxy model (`influence.proxy`): factors, query gradients and scores at the proxy's rate,
its training counted, its factors and weights on disk, and the compute it saves against scoring with the target."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from ifguide_cli.core.paper import memory, plan
from ifguide_cli.core.pipeline.estimate import peak_memory, proxy_arch

DATA_TOKENS = 488_282 * 2_048
PROXY = plan.ProxySizes("pythia-160m", steps=1_905, batch=256, eval_rows=488, eval_steps=250)
INFLUENCE = ("EK-FAC factors (3 passes, all rows)", "query gradients", "per-token scores (one pass)")
# `influence.proxy_train: {}`: the `paper` profile's one epoch over the 488,282 rows less its 0.1% held out (488)
PROFILE_STEPS = math.ceil(1.0 * ((488_282 - 488) // 256))


def _stages(p: plan.Plan) -> dict[str, plan.Stage]:
    return {s.name: s for s in p.stages}


def test_the_proxy_is_trained_and_the_influence_stages_run_at_its_rate():
    target = _stages(plan.build_plan(plan.PlanInputs.paper(model="pythia-1b")))
    stages = _stages(plan.build_plan(plan.PlanInputs.paper(model="pythia-1b", proxy=PROXY)))
    train = stages["train proxy pythia-160m (1,905 steps)"]
    assert train.tokens == 1_905 * 256 * 2_048 and train.tokens_per_s == 260_000 and train.model == "pythia-160m"
    assert stages["validation of the proxy (7 passes)"].tokens == 7 * 488 * 2_048
    for name, anchor in zip(INFLUENCE, ("factors", "forward_backward", "scores"), strict=True):
        assert stages[name].model == "pythia-160m" and stages[name].tokens_per_s == plan.ANCHORS[anchor], name
        assert stages[name].tokens == target[name].tokens and target[name].model == "pythia-1b"
        assert target[name].tokens_per_s == pytest.approx(plan.rate(anchor, "pythia-1b"))
    trained = stages["train IF-Guide (7,628 steps)"]
    assert trained.model == "pythia-1b" and trained.tokens_per_s == pytest.approx(plan.rate("train", "pythia-1b"))
    assert list(stages).index("train proxy pythia-160m (1,905 steps)") < list(stages).index(INFLUENCE[0])


def test_disk_holds_the_proxys_factors_checkpoints_and_weights():
    p = plan.build_plan(plan.PlanInputs.paper(model="pythia-1b", proxy=PROXY))
    disk = {n.name: n for n in p.disk}
    params = plan.arch("pythia-160m").params
    assert disk["EK-FAC factors"].bytes == plan.factor_bytes("pythia-160m", 2) < plan.factor_bytes("pythia-1b", 2)
    assert disk["proxy final weights"].bytes == params * 4  # the profile's fp32 weights
    assert disk["proxy checkpoints during training (peak)"].bytes == 2 * params * 4 * 3  # 2 kept, weights + AdamW
    assert disk["final weights"].bytes == 2 * plan.arch("pythia-1b").params * 2  # the target's, unchanged


def test_the_proxy_saves_compute_against_scoring_with_the_target():
    p = plan.build_plan(plan.PlanInputs.paper(model="pythia-1b", proxy=PROXY))
    on_target = sum(_stages(plan.build_plan(plan.PlanInputs.paper(model="pythia-1b")))[n].gpu_hours for n in INFLUENCE)
    on_proxy = sum(_stages(p)[n].gpu_hours for n in INFLUENCE)
    training = sum(s.gpu_hours for s in p.stages if "proxy" in s.name)
    saving = p.proxy_saving()
    assert saving is not None and saving["proxy_trained"]
    assert saving["target_gpu_hours"] == pytest.approx(on_target, abs=1e-3)
    assert saving["proxy_gpu_hours"] == pytest.approx(on_proxy, abs=1e-3)
    assert saving["proxy_training_gpu_hours"] == pytest.approx(training, abs=1e-3)
    assert saving["saved_gpu_hours"] == pytest.approx(on_target - on_proxy - training, abs=2e-3) and saving["saved_gpu_hours"] > 40
    ratio = plan.arch("pythia-1b").params / plan.arch("pythia-160m").params
    assert on_target / on_proxy == pytest.approx(ratio)  # the rates scale by parameter count
    assert "saves 53.6 GPU-h" in p.saving_line()
    assert plan.plan_for("paper").proxy_saving() is None and plan.plan_for("paper").saving_line() is None


def test_a_taken_proxy_is_not_trained_and_adds_nothing_to_disk():
    p = plan.build_plan(plan.PlanInputs.paper(model="pythia-1b", proxy=plan.ProxySizes("pythia-160m")))
    assert not any("proxy" in s.name for s in p.stages)
    assert not any(n.name.startswith("proxy") for n in p.disk)
    assert p.proxy_saving()["proxy_training_gpu_hours"] == 0 and "taken, not trained" in p.saving_line()


def test_the_json_says_which_model_each_stage_runs_on():
    data = plan.build_plan(plan.PlanInputs.paper(model="pythia-1b", proxy=PROXY)).to_json()
    models = {s["name"]: s["model"] for s in data["stages"]}
    assert {models[n] for n in INFLUENCE} == {"pythia-160m"} and models["mask (CPU)"] is None
    assert models["train baseline (7,628 steps)"] == "pythia-1b" and data["scorer"] == "pythia-160m"
    assert data["proxy"]["proxy"] == "pythia-160m" and data["proxy"]["target"] == "pythia-1b"
    assert plan.plan_for("paper").to_json()["proxy"] is None


def test_peak_memory_of_the_influence_stages_is_the_proxys():
    sizes = plan.PlanInputs.paper(model="pythia-1b", proxy=PROXY)
    out = peak_memory(sizes)
    proxy = memory.MemoryInputs("pythia-160m", 2, 8, 2_048)
    assert out["factors"] == memory.factors(proxy) and out["scores"] == memory.scores(proxy)
    assert out["train proxy"] == memory.training(memory.MemoryInputs("pythia-160m", 4, 8, 2_048))
    assert out["train / finetune"] == memory.training(memory.MemoryInputs("pythia-1b", 2, 8, 2_048))


def test_a_checkpoint_proxy_has_the_shapes_of_the_registry_model_it_was_trained_from():
    stored = {"ck-1": {"model": {"source": "checkpoint", "artifact_id": "ck-0"}},
              "ck-0": {"model": {"source": "registry", "location": "pythia-160m"}}}
    ws = SimpleNamespace(by_id=lambda i: SimpleNamespace(config=stored[i]) if i in stored else None)
    checkpoint = SimpleNamespace(identity=lambda: {"source": "checkpoint", "artifact_id": "ck-1"})
    assert proxy_arch(ws, checkpoint) == "pythia-160m"
    assert proxy_arch(ws, SimpleNamespace(identity=lambda: {"source": "local", "location": "/m"})) is None
    assert proxy_arch(ws, SimpleNamespace(identity=lambda: {"source": "checkpoint", "artifact_id": "gone"})) is None


# ---- `ifguide run --preset paper --dry-run` with a proxy ----------------------------------------------------
def test_the_paper_dry_run_counts_the_proxy(cli, tmp_path):
    args = ("run", "--preset", "paper", "--set", "model=pythia-1b", "--set", "influence.proxy=pythia-160m", "--dry-run")
    data = cli("--json", *args).json
    stages = {s["name"]: s for s in data["estimate"]["stages"]}
    train = stages[f"train proxy pythia-160m ({PROFILE_STEPS:,} steps)"]
    assert train["model"] == "pythia-160m" and train["tokens"] == PROFILE_STEPS * 256 * 2_048
    assert stages[INFLUENCE[0]]["tokens_per_s"] == plan.ANCHORS["factors"] and stages[INFLUENCE[0]]["model"] == "pythia-160m"
    assert data["estimate"]["proxy"]["saved_gpu_hours"] > 0
    assert any("the training profile's defaults" in a for a in data["estimate"]["assumptions"])
    disk = {n["name"]: n["bytes"] for n in data["estimate"]["disk"]}
    assert disk["EK-FAC factors"] == plan.factor_bytes("pythia-160m", 2)
    text = cli(*args, "--set", "influence.proxy_train.max_steps=500").stdout
    assert "train proxy pythia-160m (500 steps)" in text and "saves" in text and "(influence.proxy_train)" in text


def test_a_proxy_without_recorded_shapes_is_one_line_not_an_estimate(cli):
    args = ("run", "--preset", "paper", "--set", "model=pythia-1b", "--set", "influence.proxy=tiny", "--dry-run")
    result = cli(*args)
    assert result.exit_code == 2 and "Traceback" not in result.stdout + result.stderr  # offline: the hub inputs are missing
    notes = [line for line in result.stdout.splitlines() if "no recorded shapes" in line]
    assert notes == ["no cost estimate: the proxy tiny has no recorded shapes (known: " + ", ".join(plan.ARCHS)
                     + "); name one of those as influence.proxy to see it"]
    assert "GPU-hours" not in result.stdout and len(result.stderr.strip().splitlines()) == 1
    data = cli("--json", *args).json
    assert data["estimate"] is None and data["memory"] is None and "tiny" in data["estimate_note"]
