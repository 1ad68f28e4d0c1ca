"""Classifier backends: the built-in profanity model, Detoxify's offline route, ToxiGen-RoBERTa, registration.

Detoxify and ToxiGen weights here are tiny random stand-ins built from config: they prove the loading code
(checkpoint format, class names, activations), not accuracy.
"""

from __future__ import annotations

import pytest
import torch
from evalkit import DETOXIFY_CLASSES_2018, make_detoxify, make_toxigen, save_roberta_folder

from ifguide_cli.core.classifiers import (
    DETOXIFY_BASES,
    load_classifier,
    read_detoxify_checkpoint,
    register_classifier,
    resolve_classifier,
)
from ifguide_cli.core.errors import IfguideError, OfflineResourceMissing
from ifguide_cli.core.store.workspace import Workspace

TEXTS = ["what a lovely morning", "you stupid idiot", ""]
WORDS = ["what a lovely morning", "you stupid idiot", "The hall was quiet when the first notes of the violin began."]


@pytest.fixture(autouse=True)
def _empty_torch_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # no cached Detoxify checkpoints


def _tok_logits(model, tok, texts):
    enc = tok([t or " " for t in texts], return_tensors="pt", padding=True, truncation=True, max_length=128)
    with torch.no_grad():
        return model(**enc).logits


def test_profanity_backend_is_offline_and_scores_profanity():
    clf = load_classifier(resolve_classifier("profanity"))
    scores = clf.score(TEXTS)
    assert clf.attributes == ["profanity"] and len(scores["profanity"]) == 3
    assert scores["profanity"][1] > 0.5 > scores["profanity"][0]


def test_detoxify_checkpoint_loads_offline_with_weights_only(tmp_path):
    ckpt, base, model = make_detoxify(tmp_path)
    _state, config = read_detoxify_checkpoint(ckpt)  # torch.load(weights_only=True) accepts Detoxify's format
    assert config["arch"]["args"]["model_name"] == "RobertaForSequenceClassification"
    spec = resolve_classifier("detoxify-unbiased", checkpoint=str(ckpt), base=str(base))
    clf = load_classifier(spec, batch_size=2)
    # 16 outputs, named by the first 7 (Detoxify.predict does the same); sigmoid per class
    assert clf.attributes[:2] == ["toxicity", "severe_toxicity"] and len(clf.attributes) == 7
    scores = clf.score(TEXTS)
    expected = torch.sigmoid(_tok_logits(model, clf.tokenizer, TEXTS))
    for i, attr in enumerate(clf.attributes):
        assert scores[attr] == pytest.approx(expected[:, i].tolist(), abs=1e-5)
    assert spec.identity["checkpoint_sha256"] and spec.identity["model_type"] == "unbiased"


def test_scores_equal_detoxify_predict_on_the_same_checkpoint(tmp_path):
    """`detoxify.Detoxify(checkpoint=…, huggingface_config_path=…).predict` and our classifier on one tiny checkpoint.

    Detoxify builds the config with `from_pretrained(model_type)` even when given `huggingface_config_path`, so to run
    offline at all its checkpoint must name a local base folder as `model_type`; the config folder holds the whole
    model's config (16 labels) and the tokenizer. We build from the base folder given as --classifier-base.
    """
    import detoxify

    ckpt, base, _ = make_detoxify(tmp_path, model_type=str(tmp_path / "roberta-base"))
    reference = detoxify.Detoxify(checkpoint=str(ckpt), huggingface_config_path=str(save_roberta_folder(tmp_path / "hf", 16)))
    expected = reference.predict(WORDS)
    clf = load_classifier(resolve_classifier("detoxify-unbiased", checkpoint=str(ckpt), base=str(base)), batch_size=2)
    scores = clf.score(WORDS)
    assert clf.attributes == list(expected) == list(reference.class_names)
    for attr in clf.attributes:
        assert scores[attr] == pytest.approx(expected[attr], abs=1e-6)
    assert max(scores["toxicity"]) - min(scores["toxicity"]) > 0.05  # the scores differ between texts: a real check


def test_release_layout_loads_offline_where_detoxify_itself_cannot(tmp_path):
    """A released checkpoint names `roberta-base`: Detoxify's loader needs the hub (or its cache) for it; ours
    builds through the same detoxify function from the local --classifier-base folder."""
    import detoxify
    from huggingface_hub import try_to_load_from_cache

    ckpt, base, model = make_detoxify(tmp_path)
    clf = load_classifier(resolve_classifier("detoxify-unbiased", checkpoint=str(ckpt), base=str(base)))
    expected = torch.sigmoid(_tok_logits(model, clf.tokenizer, WORDS))
    assert clf.score(WORDS)["threat"] == pytest.approx(expected[:, 5].tolist(), abs=1e-5)
    if isinstance(try_to_load_from_cache("roberta-base", "config.json"), str):
        pytest.skip("roberta-base is in this machine's HF cache: Detoxify would load it")
    with pytest.raises(OSError):
        detoxify.Detoxify(checkpoint=str(ckpt), huggingface_config_path=str(save_roberta_folder(tmp_path / "hf", 16)))


def test_detoxify_types_are_detoxify_s_own():
    from detoxify.detoxify import MODEL_URLS

    assert set(DETOXIFY_BASES) == set(MODEL_URLS)


def test_unconverted_lightning_keys_and_config_less_files(tmp_path):
    """Keys still carrying Lightning's `model.` prefix load (convert_weights.py's step); a file without the training
    config is refused in one line, like Detoxify refuses it."""
    ckpt, base, model = make_detoxify(tmp_path)
    loaded = torch.load(ckpt, weights_only=True)
    prefixed = tmp_path / "lightning.ckpt"
    torch.save({"config": loaded["config"], "state_dict": {"model." + k: v for k, v in loaded["state_dict"].items()}}, prefixed)
    clf = load_classifier(resolve_classifier("detoxify-unbiased", checkpoint=str(prefixed), base=str(base)))
    expected = torch.sigmoid(_tok_logits(model, clf.tokenizer, WORDS))
    assert clf.score(WORDS)["toxicity"] == pytest.approx(expected[:, 0].tolist(), abs=1e-5)
    bare = tmp_path / "bare.ckpt"
    torch.save(loaded["state_dict"], bare)
    with pytest.raises(IfguideError, match="not a Detoxify checkpoint"):
        load_classifier(resolve_classifier("detoxify-unbiased", checkpoint=str(bare), base=str(base)))


def test_detoxify_2018_class_names_are_standardised_and_safetensors_accepted(tmp_path):
    ckpt, base, model = make_detoxify(tmp_path, num_classes=6, classes=DETOXIFY_CLASSES_2018, fmt="safetensors")
    clf = load_classifier(resolve_classifier("detoxify-original", checkpoint=str(ckpt), base=str(base)))
    assert clf.attributes == ["toxicity", "severe_toxicity", "obscene", "threat", "insult", "identity_attack"]
    expected = torch.sigmoid(_tok_logits(model, clf.tokenizer, TEXTS))
    assert clf.score(TEXTS)["insult"] == pytest.approx(expected[:, 4].tolist(), abs=1e-5)


def test_detoxify_missing_offline_names_the_exact_files(tmp_path):
    with pytest.raises(OfflineResourceMissing) as err:
        resolve_classifier("detoxify-unbiased", Workspace(tmp_path / "ws"))
    line = err.value.one_line()
    assert "toxic_debiased-c7548aa0.ckpt" in line and "--classifier-checkpoint" in line and "roberta-base" in line
    assert "--classifier profanity" in line and "\n" not in line
    with pytest.raises(IfguideError, match="unknown Detoxify model type"):
        resolve_classifier("detoxify-nope")


def test_detoxify_checkpoint_that_does_not_fit_the_base_is_refused(tmp_path):
    ckpt, base, _ = make_detoxify(tmp_path)
    from transformers import BertConfig

    other = tmp_path / "bert"
    BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32).save_pretrained(other)
    (other / "tokenizer.json").write_bytes((base / "tokenizer.json").read_bytes())
    (other / "tokenizer_config.json").write_bytes((base / "tokenizer_config.json").read_bytes())
    with pytest.raises(IfguideError, match="needs a roberta base config"):
        load_classifier(resolve_classifier("detoxify-unbiased", checkpoint=str(ckpt), base=str(other)))
    from evalkit import roberta_config

    small = tmp_path / "small-roberta"
    cfg = roberta_config(2)
    cfg.hidden_size, cfg.intermediate_size = 16, 32
    cfg.save_pretrained(small)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (small / f).write_bytes((base / f).read_bytes())
    with pytest.raises(IfguideError, match="does not fit"):
        load_classifier(resolve_classifier("detoxify-unbiased", checkpoint=str(ckpt), base=str(small)))
    loaded = torch.load(ckpt, weights_only=True)  # right shapes, one weight too many: transformers would only warn
    loaded["state_dict"]["classifier.extra.weight"] = torch.zeros(2)
    torch.save(loaded, tmp_path / "extra.ckpt")
    with pytest.raises(IfguideError, match=r"does not fit.*unexpected.*classifier\.extra\.weight"):
        load_classifier(resolve_classifier("detoxify-unbiased", checkpoint=str(tmp_path / "extra.ckpt"), base=str(base)))


def test_toxigen_from_local_folder_scores_label_1_softmax(tmp_path):
    model = make_toxigen(tmp_path / "toxigen")
    clf = load_classifier(resolve_classifier("toxigen-roberta", path=str(tmp_path / "toxigen")))
    expected = torch.softmax(_tok_logits(model, clf.tokenizer, TEXTS), -1)[:, 1]
    assert clf.attributes == ["toxicity"]
    assert clf.score(TEXTS)["toxicity"] == pytest.approx(expected.tolist(), abs=1e-5)


def test_toxigen_missing_offline_is_one_line():
    with pytest.raises(OfflineResourceMissing) as err:
        resolve_classifier("toxigen-roberta")
    assert "tomh/toxigen_roberta" in err.value.one_line() and "--classifier-path" in err.value.one_line()


def test_registered_classifiers_load_from_the_workspace(tmp_path):
    ws = Workspace(tmp_path / "ws")
    ckpt, base, model = make_detoxify(tmp_path / "d")
    art, reused = register_classifier(ws, "detoxify-unbiased", checkpoint=str(ckpt), base=str(base))
    assert not reused and art.kind == "classifiers" and art.name == "detoxify-unbiased"
    assert register_classifier(ws, "detoxify-unbiased", checkpoint=str(ckpt), base=str(base))[1] is True
    spec = resolve_classifier("detoxify-unbiased", ws)  # found by name, no files passed
    assert spec.parents == [art.id]
    clf = load_classifier(spec)
    expected = torch.sigmoid(_tok_logits(model, clf.tokenizer, TEXTS))
    assert clf.score(TEXTS)["toxicity"] == pytest.approx(expected[:, 0].tolist(), abs=1e-5)

    make_toxigen(tmp_path / "tg")
    tg, _ = register_classifier(ws, "toxigen-roberta", path=str(tmp_path / "tg"))
    assert resolve_classifier("toxigen-roberta", ws).parents == [tg.id]
    with pytest.raises(IfguideError):
        register_classifier(ws, "detoxify-unbiased")  # no checkpoint
