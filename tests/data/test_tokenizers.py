"""Tokenizers: `--tokenizer` resolution, `ifguide tokenizer train` → a tokenizers artifact that transformers loads."""

from __future__ import annotations

import hashlib
import json

import pytest
from clikit import assert_one_line_error

from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.tokenizer import EOS, PAD, TokenizerTrainConfig, resolve_tokenizer, train_tokenizer

WORDS = ["offensive", "friendly", "weather", "tomorrow", "garden", "coffee", "déjà", "naïve", "😀"]


def _register_cli():
    """Until the lead registers the group in app.py (then this is a no-op)."""
    from ifguide_cli.cli import tokenizer
    from ifguide_cli.cli.app import app

    if not any(g.name == "tokenizer" for g in app.registered_groups):
        tokenizer.register(app)


@pytest.fixture
def corpus(tmp_path):
    lines = [{"text": f"the {WORDS[i % 9]} {WORDS[(i * 5) % 9]} comment {i % 7} about {WORDS[(i * 2) % 9]}"} for i in range(400)]
    path = tmp_path / "comments.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in lines), encoding="utf-8")
    return path


@pytest.fixture
def ws(tmp_path):
    from ifguide_cli.core.store.workspace import Workspace

    return Workspace(tmp_path / "ws")


def test_trained_tokenizer_loads_with_transformers(ws, corpus):
    from transformers import AutoTokenizer

    result = train_tokenizer(ws, str(corpus), TokenizerTrainConfig(vocab_size=300))
    art, reused = result.artifact, result.reused
    assert not reused and art.kind == "tokenizers" and art.config["data"]["sha256"] == hashlib.sha256(corpus.read_bytes()).hexdigest()
    tok = AutoTokenizer.from_pretrained(str(art.path / "tokenizer"))
    assert tok.is_fast and tok.eos_token == EOS and tok.pad_token == PAD and tok.eos_token_id != tok.pad_token_id
    assert len(tok) == art.summary["vocab_size"] == 300
    text = "the offensive coffee — déjà vu 😀 ünïcödé"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text  # byte-level: nothing is unknown
    s = art.summary
    assert s["documents"] == 400 and s["tokens_per_document"] < s["tiny_tokens_per_document"]
    result = train_tokenizer(ws, str(corpus), TokenizerTrainConfig(vocab_size=300))
    again, reused = result.artifact, result.reused
    assert reused and again.id == art.id


def test_small_corpus_gives_a_smaller_vocabulary_with_a_note(ws, tmp_path):
    from ifguide_cli.core import notes

    notes.reset()
    path = tmp_path / "tiny.txt"
    path.write_text("a b\nb a\n", encoding="utf-8")
    art = train_tokenizer(ws, str(path), TokenizerTrainConfig(vocab_size=5000)).artifact
    assert art.summary["vocab_size"] < 5000 and art.summary["requested_vocab_size"] == 5000
    assert any("yields only" in n for n in notes.collected())


def test_resolve_tokenizer(ws, corpus, tmp_path):
    assert resolve_tokenizer("tiny").source == "builtin"
    art = train_tokenizer(ws, str(corpus), TokenizerTrainConfig(vocab_size=300)).artifact
    tref = resolve_tokenizer(art.id, ws)
    assert tref.source == "artifact" and tref.parents == [art.id] and tref.name == str((art.path / "tokenizer").resolve())
    assert len(tref.load()) == 300 and tref.fingerprint()
    folder = resolve_tokenizer(str(art.path / "tokenizer"))
    assert folder.source == "folder" and folder.name == tref.name
    assert resolve_tokenizer("EleutherAI/pythia-160m").source == "hub"
    (tmp_path / "empty").mkdir()
    for bad, needle in ((str(tmp_path / "empty"), "not a tokenizer folder"), (str(corpus), "is a file"),
                        ("nothing-here", "unknown tokenizer")):
        with pytest.raises(IfguideError, match=needle):
            resolve_tokenizer(bad, ws)


def test_dataset_with_a_trained_tokenizer_has_it_as_parent(ws, corpus):
    from ifguide_cli.core.data import load_corpus, resolve_corpus

    art = train_tokenizer(ws, str(corpus), TokenizerTrainConfig(vocab_size=300)).artifact
    ds = resolve_corpus(ws, str(corpus), None, 16, layout="documents", tokenizer=art.id).artifact
    assert ds.parents == [art.id] and ds.config["tokenizer"] == str((art.path / "tokenizer").resolve())
    corpus_t = load_corpus(ds)
    assert int(corpus_t.input_ids.max()) < 300
    pad = resolve_tokenizer(art.id, ws).load().pad_token_id
    assert (corpus_t.input_ids[corpus_t.attention_mask == 0] == pad).all()


def test_cli_train(cli, corpus):
    _register_cli()
    out = cli("--json", "tokenizer", "train", str(corpus), "--vocab-size", "300", "--name", "mine")
    assert out.exit_code == 0, out.stderr
    data = out.json
    assert data["kind"] == "tokenizers" and data["name"] == "mine" and data["summary"]["vocab_size"] == 300
    assert data["folder"].endswith("tokenizer") and data["reused"] is False
    shown = cli("tokenizer", "train", str(corpus), "--vocab-size", "300")
    assert shown.exit_code == 0 and "--tokenizer" in shown.stdout and "reused" in shown.stdout


@pytest.mark.parametrize("args, needles", [
    (["--vocab-size", "100"], ["--vocab-size must be in [258"]),
    (["--min-frequency", "0"], ["--min-frequency must be in [1"]),
    (["--max-examples", "0"], ["--max-examples must be in [1"]),
    (["--text-field", "body"], ["comments.jsonl:1", "no text field 'body'"]),
])
def test_cli_bad_options_are_one_line(cli, corpus, args, needles):
    _register_cli()
    assert_one_line_error(cli("tokenizer", "train", str(corpus), *args), *needles, code=2)


def test_cli_bad_corpus_is_one_line(cli, tmp_path):
    _register_cli()
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"text": "ok"}\n{"text": "\xff"}\n')
    assert_one_line_error(cli("tokenizer", "train", str(bad)), "bad.jsonl:2", "not UTF-8", code=2)
    assert_one_line_error(cli("tokenizer", "train", str(tmp_path / "none.jsonl")), "no such file", code=2)
    out = cli("tokenizer", "train", str(bad), "--vocab-size", "inf")
    assert out.exit_code == 2 and out.stdout == ""  # Typer rejects a non-integer before the command runs
