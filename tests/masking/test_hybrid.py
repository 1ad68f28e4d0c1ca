"""The `hybrid` mask source: influence scores weighted by a classifier's span probability, then Alg. 1.

Hand-made documents tokenized with the packaged tiny tokenizer (one per row) and a hand-made score file: the
clean document holds the largest influence scores, the toxic one smaller ones, so plain influence and the
hybrid must disagree about which comes first.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from clikit import assert_one_line_error, invoke_cli

from ifguide_cli.core.masking import MaskConfig, create_mask_artifact, load_safetensors_array, mask_dataset
from ifguide_cli.core.masking.hybrid import HybridConfig, combine
from ifguide_cli.core.masking.source import MaskRefs, make_mask
from ifguide_cli.core.pipeline.reading import spec_from_dict
from ifguide_cli.core.pipeline.stage_configs import stage_configs
from ifguide_cli.core.store.artifact_files import CORPUS_FILE, MASK_FILE
from ifguide_cli.core.store.workspace import Workspace

DOCS = ["you stupid idiot go away now", "a quiet walk in the park today", "the weather is fine"]
TOXIC, CLEAN = 0, 1


@pytest.fixture
def env(tmp_path):
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps({"text": t, "toxic": int(i == TOXIC)}) + "\n" for i, t in enumerate(DOCS)))
    ws = Workspace(tmp_path / "ws")
    dataset = mask_dataset(ws, str(corpus), corpus={"tokenizer": "tiny", "layout": "documents", "seq_len": 16,
                                                    "label_field": "toxic"})
    shape = load_safetensors_array(dataset.file(CORPUS_FILE), "input_ids").shape
    scores = np.zeros(shape, dtype=np.float32)
    scores[TOXIC, :4] = 1.0  # some influence in the toxic document
    scores[CLEAN, :4] = 5.0  # more in the clean one: plain influence ranks it first
    path = tmp_path / "scores.npy"
    np.save(path, scores)
    return {"ws": ws, "dataset": dataset, "scores": path, "tmp": tmp_path}


def _stub_classifier(monkeypatch):
    """P(toxic | span) = 0.9 for spans with an insult, 0.01 otherwise."""
    import ifguide_cli.core.classifiers as classifiers
    from ifguide_cli.core.classifiers import Classifier

    class Stub(Classifier):
        name, attributes = "stub", ["toxicity"]

        def score(self, texts, reporter=None):
            return {"toxicity": [0.9 if ("idiot" in t or "stupid" in t) else 0.01 for t in texts]}

    monkeypatch.setattr(classifiers, "load_classifier", lambda spec, **kw: Stub())


def test_combine_weights_influence_by_the_span_probability():
    s = np.array([[4.0, -2.0, 1.0, 0.5]], dtype=np.float32)
    p = np.array([[0.01, 0.9, 0.9, 0.5]], dtype=np.float32)
    np.testing.assert_allclose(combine(s, p, "product"), [[0.04, -1.8, 0.9, 0.25]], rtol=1e-6)
    # ranks over the counted positions (the last one is padding): s ranks 3/3, 1/3, 2/3; p ranks 1/3, 1, 1
    valid = np.array([[True, True, True, False]])
    np.testing.assert_allclose(combine(s, p, "rank", valid), [[1 / 3, 1 / 3, 2 / 3, 0.0]], rtol=1e-6)


def test_hybrid_ranks_the_toxic_document_first_where_influence_alone_does_not(env, monkeypatch):
    _stub_classifier(monkeypatch)
    ws, dataset, scores = env["ws"], env["dataset"], str(env["scores"])
    alg1 = {"threshold": 0.5, "window": 0, "max_tokens": 4}
    plain = create_mask_artifact(ws, scores, MaskConfig(**alg1), data_ref=dataset.id).artifact
    res = make_mask(ws, "hybrid", MaskRefs(scores, dataset.id), HybridConfig(**alg1, span_window=3, span_stride=2))
    hybrid = res.artifact
    assert not res.reused and hybrid.summary["source"] == "hybrid" and hybrid.summary["combine"] == "product"
    plain_mask = np.asarray(load_safetensors_array(plain.file(MASK_FILE), "mask"))
    hybrid_mask = np.asarray(load_safetensors_array(hybrid.file(MASK_FILE), "mask"))
    assert plain_mask[CLEAN].sum() == 4 and plain_mask[TOXIC].sum() == 0  # the budget goes to the clean document
    assert hybrid_mask[TOXIC].sum() == 4 and hybrid_mask[CLEAN].sum() == 0  # weighted: to the toxic one
    assert hybrid.summary["label_precision_at_k"] == 1.0 and plain.summary["label_precision_at_k"] == 0.0
    again = make_mask(ws, "hybrid", MaskRefs(scores, dataset.id), HybridConfig(**alg1, span_window=3, span_stride=2))
    assert again.reused and again.artifact.id == hybrid.id
    ranked = make_mask(ws, "hybrid", MaskRefs(scores, dataset.id), HybridConfig(**alg1, combine="rank"))
    assert ranked.artifact.id != hybrid.id  # the combination is part of the mask's identity


def test_cli_builds_a_hybrid_mask_with_the_builtin_classifier_and_fails_in_one_line(env):
    root, scores, dataset = env["ws"].root, env["scores"], env["dataset"]
    out = invoke_cli(root, "--json", "mask", "hybrid", scores, "--data", dataset.id, "--classifier", "profanity",
                     "-p", "0.5", "-L", "6", "--span-window", "4", "--span-stride", "2")
    assert out.exit_code == 0, out.stderr
    summary = out.json["summary"]
    assert summary["source"] == "hybrid" and summary["classifier"] == "profanity" and 0 < summary["tokens_selected"] <= 6
    assert out.json["config"]["span_window"] == 4 and out.json["config"]["positions"] == "attention_mask"
    assert_one_line_error(invoke_cli(root, "mask", "hybrid", scores), "names no dataset", code=2)
    assert_one_line_error(invoke_cli(root, "mask", "hybrid", scores, "--data", dataset.id, "--span-window", "2",
                                     "--span-stride", "3"), "--span-stride 3 is longer than --span-window 2", code=2)
    assert_one_line_error(invoke_cli(root, "mask", "hybrid", scores, "--data", dataset.id, "--classifier", "nope"),
                          "nope", code=2)


def test_hybrid_is_a_pipeline_arm_fed_the_differential_scores():
    from ifguide_cli.core.pipeline.arms import used_scores

    spec = spec_from_dict({"mask": {"threshold": 0.95, "max_tokens": 500},
                           "arms": [{"name": "hyb", "source": "hybrid", "suppression": "penalty",
                                     "mask": {"combine": "rank", "classifier": "profanity"}}]})
    (arm,) = stage_configs(spec).arms
    assert isinstance(arm.mask, HybridConfig) and arm.mask.combine == "rank"
    assert (arm.mask.threshold, arm.mask.max_tokens) == (0.95, 500)  # Alg. 1's options from the mask section
    assert used_scores((arm,)) == [True] and arm.entry.refs(data="d", scores="s") == MaskRefs("s")


def test_dry_run_plans_the_hybrid_arm(tmp_path):
    import yaml

    from ifguide_cli.core.pipeline.spec import preset_path

    tree = {**yaml.safe_load(preset_path("tiny").read_text()),
            "arms": [{"name": "hyb", "source": "hybrid", "suppression": "filter"}]}
    path = tmp_path / "hybrid.yaml"
    path.write_text(yaml.safe_dump(tree))
    plan = invoke_cli(tmp_path / "ws", "--json", "run", str(path), "--dry-run").json
    names = [s["name"] for s in plan["stages"]]
    assert names.index("scores") < names.index("mask_hyb") < names.index("hyb")
    assert "arms[0].mask.classifier" in {i["role"] for i in plan["inputs"]}


@pytest.mark.slow
def test_a_hybrid_arm_runs_in_the_pipeline_and_its_plan_finds_it(tmp_path):
    """A small comparison (the tiny model, a few steps): the hybrid arm's mask is built from the run's differential
    scores with the mask section's budget, fine-tuned beside the control, and the dry run then finds every stage."""
    import yaml

    tree = {"model": "tiny", "data": "tiny", "corpus": {"max_examples": 96},
            "baseline": {"train": {"max_steps": 2, "batch_size": 16, "eval_docs": 16, "save_steps": 2}},
            "mask": {"threshold": 0.9, "window": 1, "max_tokens": 200},
            "finetune": {"train": {"max_steps": 2, "batch_size": 16, "eval_docs": 16, "save_steps": 2}},
            "arms": [{"name": "hyb", "source": "hybrid", "suppression": "penalty", "mask": {"span_window": 8}}],
            "eval": {"prompts": "tiny-prompts", "classifier": "profanity", "num_prompts": 4, "samples": 1,
                     "max_new_tokens": 3, "lambada": None, "fluency": {"ppl_docs": 4}}}
    path = tmp_path / "hybrid.yaml"
    path.write_text(yaml.safe_dump(tree))
    ws_root = tmp_path / "ws"
    out = invoke_cli(ws_root, "--json", "run", str(path))
    assert out.exit_code == 0, out.stderr
    result = out.json
    mask = Workspace(ws_root).get("masks", result["stages"]["mask_hyb"]["id"])
    assert mask.summary["source"] == "hybrid" and mask.config["scores"] == result["stages"]["scores"]["id"]
    assert mask.config["span_window"] == 8 and 0 < mask.summary["tokens_selected"] <= 200
    plan = invoke_cli(ws_root, "--json", "run", str(path), "--dry-run").json
    assert {s["name"]: s["reuse"] for s in plan["stages"]} == {k: v["id"] for k, v in result["stages"].items()}
