"""`influence.proxy`: a smaller model scores the tokens and its mask trains the bigger target (the paper's proxy).

The spec's one-line refusals, the dry-run plan's proxy stages, and a small run end to end where the target
(`tiny-4x`, 4.6× the parameters) is fine-tuned with the mask of a `tiny` proxy trained on the same dataset.
"""

from __future__ import annotations

import json
import shutil

import pytest
import yaml
from clikit import assert_one_line_error

from ifguide_cli.core.registry import tiny_asset

# 192 rows, 4-step baseline and proxy, 3-step fine-tunes, no evaluation: the lineage is what is tested
SMALL = {
    "model": "tiny-4x", "data": "tiny", "corpus": {"max_examples": 192},
    "baseline": {"train": {"max_steps": 4, "batch_size": 16, "eval_docs": 16, "save_steps": 2, "seed": 5}},
    "influence": {"toxic_queries": "tiny-queries-toxic", "safe_queries": "tiny-queries-safe", "factors": {"strategy": "ekfac"},
                  "proxy": "tiny",
                  "proxy_train": {"max_steps": 4, "batch_size": 16, "eval_docs": 16, "save_steps": 2, "seed": 5}},
    "mask": {"threshold": 0.9, "window": 1, "max_tokens": 300},
    "finetune": {"lambda": 1.5, "train": {"max_steps": 3, "batch_size": 16, "eval_docs": 16, "save_steps": 3, "seed": 7}},
    "eval": {"toxicity": False, "ppl_data": None, "lambada": None},
}


def _write(tmp_path, tree: dict, name: str = "proxy.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


def _with_influence(**influence) -> dict:
    return {**SMALL, "influence": {**SMALL["influence"], **influence}}


def _model_folder(tmp_path):
    """A saved model folder whose tokenizer is its own (not the packaged `tiny` one the target reads)."""
    folder = tmp_path / "other-model"
    folder.mkdir()
    shutil.copy(tiny_asset("model_config.json"), folder / "config.json")
    (folder / "tokenizer_config.json").write_text(json.dumps({}))
    return folder


# ---- the spec -------------------------------------------------------------------------------------------
def test_proxy_train_without_a_proxy_is_one_line(cli, tmp_path, workspace_dir):
    tree = {**SMALL, "influence": {k: v for k, v in SMALL["influence"].items() if k != "proxy"}}
    assert_one_line_error(cli("run", str(_write(tmp_path, tree)), "--dry-run"), "influence.proxy_train does not apply",
                          code=2)
    assert not workspace_dir.exists()


@pytest.mark.parametrize("options, needle", [({"nope": 1}, "nope"), ({"learning_rate": -1}, "--lr")])
def test_the_proxys_training_options_are_checked_before_any_stage(cli, tmp_path, workspace_dir, options, needle):
    path = _write(tmp_path, _with_influence(proxy_train=options))
    line = assert_one_line_error(cli("run", str(path)), "influence.proxy_train", needle, code=2)
    assert "proxy.yaml" in line and not workspace_dir.exists()


def test_a_proxy_with_another_tokenizer_is_refused_before_any_work(cli, tmp_path, workspace_dir):
    path = _write(tmp_path, _with_influence(proxy=str(_model_folder(tmp_path)), proxy_train={}))
    for args in ((), ("--dry-run",)):
        assert_one_line_error(cli("run", str(path), *args), "influence.proxy", "tokenizer", "ifguide mask transfer",
                              code=2)
    assert not workspace_dir.exists()  # nothing ran


def test_a_taken_proxy_has_no_training_options(cli, tmp_path):
    path = _write(tmp_path, _with_influence(proxy=str(_model_folder(tmp_path))))
    assert_one_line_error(cli("run", str(path), "--dry-run"), "influence.proxy_train does not apply", "taken as it is",
                          code=2)


def test_proxy_is_not_an_arm_name():
    from ifguide_cli.core.pipeline.spec import RESERVED_ARM_NAMES

    assert "proxy" in RESERVED_ARM_NAMES  # the proxy's checkpoint is the run's stage `proxy`


# ---- the plan -------------------------------------------------------------------------------------------
def test_the_dry_run_plans_the_proxy_and_runs_the_influence_stages_on_it(cli, tmp_path, workspace_dir):
    path = _write(tmp_path, SMALL)
    plan = cli("--json", "run", str(path), "--dry-run").json
    assert [s["name"] for s in plan["stages"]] == ["data", "baseline", "proxy", "factors", "scores", "mask", "control",
                                                   "ifguide"]
    does = {s["name"]: s["does"] for s in plan["stages"]}
    assert does["proxy"].startswith("train the proxy tiny from scratch") and "4 steps" in does["proxy"]
    assert "on the proxy tiny" in does["factors"] and "with the proxy tiny" in does["scores"]
    assert any(i["role"] == "influence.proxy" and i["available"] for i in plan["inputs"])
    text = cli("run", str(path), "--dry-run").stdout
    assert "proxy" in text and "factors on the proxy tiny" in text
    assert not workspace_dir.exists()


# ---- end to end -----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_target_is_fine_tuned_with_the_proxys_mask(cli, tmp_path, workspace_dir):
    from ifguide_cli.core.models import load_model, resolve_model
    from ifguide_cli.core.store.workspace import Workspace

    path = _write(tmp_path, SMALL)
    result = cli("--json", "run", str(path))
    assert result.exit_code == 0, result.stderr
    out, ws = result.json, Workspace(workspace_dir)
    stages = out["stages"]
    proxy, baseline = (ws.get("checkpoints", stages[s]["id"]) for s in ("proxy", "baseline"))
    assert proxy.config["model"]["location"] == "tiny" and baseline.config["model"]["location"] == "tiny-4x"
    assert proxy.config["dataset"] == baseline.config["dataset"] == stages["data"]["id"]  # the same dataset artifact
    sizes = {name: sum(p.numel() for p in load_model(resolve_model(art.id, ws)).parameters())
             for name, art in (("proxy", proxy), ("target", baseline))}
    assert sizes["target"] >= 4 * sizes["proxy"], sizes
    # lineage: the target's IF-Guide checkpoint ← the proxy's mask ← its scores ← its factors ← the proxy
    factors = ws.get("factors", stages["factors"]["id"])
    assert factors.config["model"]["artifact_id"] == proxy.id
    assert ws.get("scores", stages["scores"]["id"]).config["factors"] == factors.id
    assert ws.get("masks", stages["mask"]["id"]).config["scores"] == stages["scores"]["id"]
    ifguide, control = (ws.get("checkpoints", stages[s]["id"]) for s in ("ifguide", "control"))
    assert ifguide.config["mask"] == stages["mask"]["id"] and control.config["mask"] is None
    assert ifguide.config["model"]["artifact_id"] == baseline.id == control.config["model"]["artifact_id"]
    assert out["mask"]["proxy"] == "tiny" and out["mask"]["proxy_checkpoint"] == proxy.id
    again = cli("--json", "run", str(path)).json  # every stage reused, the proxy's too
    assert all(s["reused"] for s in again["stages"].values()) and again["stages"]["proxy"]["id"] == proxy.id
    plan = cli("--json", "run", str(path), "--dry-run").json
    assert {s["name"]: s["reuse"] for s in plan["stages"]} == {k: v["id"] for k, v in stages.items()}
