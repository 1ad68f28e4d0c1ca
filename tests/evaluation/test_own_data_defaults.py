"""A model trained on your own corpus is evaluated on that corpus's held-out split (perplexity) and its prefixes
(toxicity prompts, split by label), never on packaged synthetic text; without a held-out split every missing input
is named at once, with its option and file format."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from clikit import assert_one_line_error

from ifguide_cli.core.data import resolve_corpus
from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.evaluation.config import DefenseConfig, FluencyConfig
from ifguide_cli.core.evaluation.inputs import default_fluency_data, default_prompt_set, fluency_data, toxicity_inputs

PLAIN = "the river runs past old stone houses where people gather in the evening to talk"
DOCS = [{"text": f"{PLAIN} number {i}.", "toxic": False} for i in range(60)]
DOCS += [{"text": f"you are a stupid idiot and a worthless moron said person {i} loudly", "toxic": True} for i in range(8)]


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "own.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in DOCS), encoding="utf-8")
    return path


def _trained_on(ws, dataset):
    """A checkpoint artifact recording `dataset`, and the model reference the eval commands get for it."""
    ckpt, _ = ws.create("checkpoints", {"mode": "pretrain", "dataset": dataset.id, "test": dataset.id}, [dataset.id],
                        lambda ctx: {})
    return SimpleNamespace(source="checkpoint", artifact_id=ckpt.id, tokenizer="tiny", ref=ckpt.id, parents=[ckpt.id])


def test_the_held_out_split_is_seeded_per_label_and_kept_out_of_training(tmp_path, corpus):
    from ifguide_cli.core.models import resolve_model
    from ifguide_cli.core.store.workspace import Workspace

    ws = Workspace(tmp_path / "ws")
    art = resolve_corpus(ws, str(corpus), resolve_model("tiny"), 32, layout="documents", label_field="toxic",
                         heldout=0.25).artifact
    held = [json.loads(x) for x in art.file("heldout.jsonl").read_text().splitlines()]
    prompts = [json.loads(x) for x in art.file("heldout_prompts.jsonl").read_text().splitlines()]
    assert len(held) == 17 and sum(h["toxic"] for h in held) == 2  # 25% of 68: 15 of 60 plain, 2 of 8 rude
    assert art.summary["heldout_documents"] == 17 and art.summary["rows"] == 68 - 17 and art.config["heldout"] == 0.25
    assert [p["toxic"] for p in prompts] == [h["toxic"] for h in held]
    assert all(h["text"].startswith(p["prompt"]) and len(p["prompt"]) < len(h["text"]) for h, p in zip(held, prompts, strict=True))
    trained = art.file("texts.bin").read_bytes().decode()
    assert not any(h["text"] in trained for h in held)
    again = resolve_corpus(ws, str(corpus), resolve_model("tiny"), 32, layout="documents", label_field="toxic",
                           heldout=0.25, overflow="truncate").artifact
    assert again.file("heldout.jsonl").read_text() == art.file("heldout.jsonl").read_text()  # the same seed, the same split
    mref = _trained_on(ws, art)
    assert default_prompt_set(mref, ws) == str(art.path / "heldout_prompts.jsonl")
    assert default_fluency_data(mref, ws) == (str(art.path / "heldout.jsonl"), None, None)  # no LAMBADA, no tiny-heldout
    with pytest.raises(IfguideError, match="none would be left"):
        resolve_corpus(ws, str(corpus), resolve_model("tiny"), 32, heldout=68)


def test_without_a_held_out_split_every_missing_input_is_named_at_once(tmp_path, corpus, monkeypatch):
    from ifguide_cli.core.classifiers import resolve_classifier
    from ifguide_cli.core.models import resolve_model
    from ifguide_cli.core.store.workspace import Workspace

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    ws = Workspace(tmp_path / "ws")
    art = resolve_corpus(ws, str(corpus), resolve_model("tiny"), 32, layout="documents").artifact
    mref = _trained_on(ws, art)
    with pytest.raises(IfguideError) as err:
        toxicity_inputs(ws, mref, None, lambda: resolve_classifier("detoxify-unbiased", ws), "detoxify-unbiased")
    line = err.value.one_line()
    assert "2 more input(s)" in line and "--prompts FILE" in line and '"prompt"' in line and "--heldout" in line
    assert "--classifier detoxify-unbiased" in line
    with pytest.raises(IfguideError) as err:
        fluency_data(mref, FluencyConfig(), DefenseConfig(), ws)
    assert "--ppl-data FILE" in err.value.one_line() and '"text" field' in err.value.one_line()
    data = fluency_data(mref, FluencyConfig(ppl_data=str(corpus)), DefenseConfig(), ws)
    assert data.lambada is None and data.ppl_data == str(corpus)  # LAMBADA skipped with a note unless given


def test_eval_fluency_lists_every_missing_text_at_once(cli):
    result = cli("eval", "fluency", "pythia-160m", "--allow-random")
    assert_one_line_error(result, "2 more input(s)", "--ppl-data", "--lambada", "--no-lambada")
    quiet = cli("eval", "fluency", "tiny", "--allow-random", "--ppl-docs", "2", "--no-lambada")
    assert quiet.exit_code == 0 and "Loading weights" not in quiet.stderr
