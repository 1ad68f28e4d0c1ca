"""The cheap mask sources: `mask classifier` (spans or documents) and `mask wordlist`, on hand-made documents.

The documents are tokenized with the packaged tiny tokenizer, one per row; the expected marks are written
out by hand from the tokens (checked first, so a tokenizer change shows up as such).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from clikit import assert_one_line_error

from ifguide_cli.core.classifiers import Classifier
from ifguide_cli.core.masking import (
    ClassifierMaskConfig,
    MaskConfig,
    WordlistMaskConfig,
    build_classifier_mask,
    build_wordlist_mask,
    create_mask_artifact,
    load_safetensors_array,
    mask_dataset,
)
from ifguide_cli.core.masking.evidence import span_bounds
from ifguide_cli.core.masking.row_text import RowText
from ifguide_cli.core.store.artifact_files import MASK_FILE
from ifguide_cli.core.store.workspace import Workspace

DOCS = [
    "one two three four five six idiot seven eight nine",  # the idiot span
    "bad bad bad day",  # three bads
    "a quiet walk in the park",  # clean
    "bad weather bad luck",  # two bads
    "You Idiot, idiots and a class of bullshit. Go to   hell, crème idiot!",  # the word list's example
]
LAYOUT = {"tokenizer": "tiny", "layout": "documents", "seq_len": 32}


class _Stub(Classifier):
    """A classifier with known answers: `rule(text)` per text."""

    def __init__(self, rule):
        self.name, self.attributes, self.rule = "stub", ["toxicity"], rule

    def score(self, texts, reporter=None):
        return {"toxicity": [self.rule(t) for t in texts]}


@pytest.fixture
def env(tmp_path):
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps({"text": t, "toxic": int("idiot" in t.lower())}) + "\n" for t in DOCS))
    ws = Workspace(tmp_path / "ws")
    dataset = mask_dataset(ws, str(corpus), corpus={**LAYOUT, "label_field": "toxic"})
    return {"ws": ws, "dataset": dataset, "corpus": corpus, "tmp": tmp_path}


def _stub(monkeypatch, rule) -> None:
    import ifguide_cli.core.classifiers as classifiers

    monkeypatch.setattr(classifiers, "load_classifier", lambda spec, **kw: _Stub(rule))


def _marked_text(ws, dataset, art, row: int) -> list[str]:
    """The text of the row's runs of marked tokens, in order."""
    mask = _masked_positions(art)
    seg = next(RowText(ws, dataset).segments(row))
    runs, prev = [], None
    for pos, piece in zip(seg.positions, seg.pieces, strict=True):
        if mask[row, pos]:
            if prev is not None and pos == prev + 1:
                runs[-1] += piece
            else:
                runs.append(piece)
            prev = pos
    return runs


def _masked_positions(art) -> np.ndarray:
    return np.asarray(load_safetensors_array(art.file(MASK_FILE), "mask"))


def test_span_bounds_cover_every_token():
    assert span_bounds(3, 4, 2) == [(0, 3)]
    assert span_bounds(10, 3, 2) == [(0, 3), (2, 5), (4, 7), (6, 9), (7, 10)]  # the last span flush with the end
    assert span_bounds(8, 4, 4) == [(0, 4), (4, 8)]


def test_token_level_marks_exactly_the_flagged_spans(env, monkeypatch):
    ws, dataset = env["ws"], env["dataset"]
    seg = next(RowText(ws, dataset).segments(0))
    assert seg.pieces == ["one", " two", " three", " four", " five", " six", " idiot", " se", "ven", " eight", " nine"]
    _stub(monkeypatch, lambda t: 0.9 if "idiot" in t.lower() else 0.1)
    config = ClassifierMaskConfig(classifier="profanity", level="token", window=3, stride=2, threshold=0.5)
    art, reused = build_classifier_mask(ws, dataset.id, config)
    assert not reused
    # 11 tokens, spans [0,3) [2,5) [4,7) [6,9) [8,11): those holding ` idiot` (6) are [4,7) and [6,9)
    assert _marked_text(ws, dataset, art, 0) == [" five six idiot seven"]
    assert _marked_text(ws, dataset, art, 4)  # the Idiots of the last document are flagged too
    mask = _masked_positions(art)
    assert not mask[[1, 2, 3]].any()  # nothing in the documents without the word
    s = art.summary
    assert (s["source"], s["level"], s["window"], s["stride"], s["threshold"]) == ("classifier", "token", 3, 2, 0.5)
    assert s["tokens_selected"] == int(mask.sum()) and s["label_precision_at_k"] == 1.0 and s["label_auc"] == 1.0
    assert art.parents == [dataset.id] and art.config["dataset"] == dataset.id
    assert build_classifier_mask(ws, dataset.id, config)[1]  # the same request: reused, nothing computed


def test_document_level_ranks_documents_by_score_within_the_budget(env, monkeypatch):
    ws, dataset = env["ws"], env["dataset"]
    _stub(monkeypatch, lambda t: min(1.0, 0.3 * t.lower().split().count("bad")))
    config = ClassifierMaskConfig(level="document", threshold=0.5)
    art, _ = build_classifier_mask(ws, dataset.id, config)
    ranking = np.asarray(load_safetensors_array(art.file(MASK_FILE), "ranking"))
    assert ranking[:2].tolist() == [1, 3]  # 0.9, then 0.6; the others score 0 (ties: lower index first)
    mask = _masked_positions(art)
    text = RowText(ws, dataset)
    for row in (1, 3):  # flagged: every text token, never the EOS
        assert np.flatnonzero(mask[row]).tolist() == text.text_positions(row).tolist()
    assert not mask[[0, 2, 4]].any()
    assert art.summary["documents_flagged"] == 2 and art.summary["window"] is None
    # a budget one token past the first document: it whole, then the next one's first token
    first = text.text_positions(1).size
    art, _ = build_classifier_mask(ws, dataset.id, config.replace(max_tokens=first + 1))
    mask = _masked_positions(art)
    assert mask[1].sum() == first and np.flatnonzero(mask[3]).tolist() == text.text_positions(3)[:1].tolist()
    assert art.summary["tokens_selected"] == first + 1 and art.summary["stopped_at_rank"] == 1


def test_wordlist_marks_exactly_the_listed_words(env):
    ws, dataset = env["ws"], env["dataset"]
    words = env["tmp"] / "words.txt"
    words.write_text("# insults\nidiot\nASS\nbullshit\ngo to hell\n\nidiot\n")
    art, _ = build_wordlist_mask(ws, dataset.id, WordlistMaskConfig(wordlist=str(words)))
    # `idiots` and `class` are other words; `Idiot` (3 tokens) and `bullshit` (4) are marked whole; the phrase
    # matches across the extra spaces; the `idiot` after a split `è` is found
    assert _marked_text(ws, dataset, art, 4) == [" Idiot", " bullshit", " Go to   hell", " idiot"]
    assert _marked_text(ws, dataset, art, 0) == [" idiot"]
    s = art.summary
    assert (s["source"], s["wordlist_words"], s["matches"]) == ("wordlist", 4, 5)
    assert len(s["wordlist_sha256"]) == 64 and s["documents_selected"] == 2
    ranking = np.asarray(load_safetensors_array(art.file(MASK_FILE), "ranking"))
    assert ranking[:2].tolist() == [4, 0]  # by number of matches
    # the budget: the walk stops inside the first document, after its tokens that fit, left to right
    art, _ = build_wordlist_mask(ws, dataset.id, WordlistMaskConfig(wordlist=str(words), max_tokens=4))
    assert _marked_text(ws, dataset, art, 4) == [" Idiot", " bu"] and art.summary["tokens_selected"] == 4
    assert art.summary["budget_exhausted"] and not _masked_positions(art)[0].any()


def test_influence_masks_say_their_source(env):
    ws, dataset = env["ws"], env["dataset"]
    scores = env["tmp"] / "scores.npy"
    np.save(scores, np.random.default_rng(0).standard_normal((len(DOCS), 32)).astype(np.float32))
    art = create_mask_artifact(ws, str(scores), MaskConfig(threshold=0.9), data_ref=dataset.id).artifact
    assert art.summary["source"] == "influence"


def test_cli_profanity_mask_is_shown_and_fine_tuned_on(env, cli, workspace_dir):
    from evalkit import make_checkpoint

    cli_ws = workspace_dir
    corpus = str(env["corpus"])
    out = cli("--json", "mask", "classifier", "--data", corpus, "--tokenizer", "tiny", "--layout", "documents",
              "--seq-len", "32", "--window", "4", "--stride", "2", "--name", "cls")
    data = out.data
    assert data is not None, out.output
    assert data["summary"]["source"] == "classifier" and data["summary"]["tokens_selected"] > 0
    assert data["top_documents"][0]["doc"] == 4  # the insults document
    shown = cli("mask", "show", "cls", "--rank", "0")
    assert shown.exit_code == 0 and "[[" in shown.stdout and "rank 0 of 5" in shown.stdout
    base = make_checkpoint(cli_ws)
    tuned = cli("--json", "finetune", base, "--data", data["summary"]["dataset"], "--mask", "cls", "--max-steps", "1",
                "--batch-size", "2", "--micro-batch-size", "2", "--probe-docs", "2")
    assert tuned.data is not None, tuned.output
    assert tuned.data["config"]["mask"] == data["id"]


@pytest.mark.parametrize(("args", "needles"), [
    (["wordlist", "--wordlist", "nope.txt"], ["word list not found: nope.txt"]),
    (["wordlist"], ["--wordlist FILE is required"]),
    (["wordlist", "--wordlist", "empty.txt"], ["has no words"]),
    (["wordlist", "--wordlist", "binary.txt"], ["is not UTF-8 text"]),
    (["classifier", "--classifier", "no-such-classifier"], ["unknown classifier 'no-such-classifier'"]),
    (["classifier", "--window", "0"], ["--window must be in [1, inf)"]),
    (["classifier", "--threshold", "nan"], ["--threshold must be a finite number"]),
    (["classifier", "--window", "4", "--stride", "5"], ["--stride 5 is longer than --window 4"]),
    (["classifier", "--level", "sentence"], ["--level must be one of document, token"]),
])
def test_bad_inputs_are_one_line(cli, tmp_path, monkeypatch, args, needles):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty.txt").write_text("# only a comment\n\n")
    (tmp_path / "binary.txt").write_bytes(b"\x00\x01idiot\xff")
    assert_one_line_error(cli("mask", *args, "--data", "tiny"), *needles, code=2)


def test_source_data_needs_a_tokenizer(cli, tmp_path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(json.dumps({"text": "hello"}) + "\n")
    assert_one_line_error(cli("mask", "classifier", "--data", str(corpus)), "needs a tokenizer", code=2)


def test_a_registered_transformers_classifier_ranks_documents_and_is_a_parent(env):
    """A ToxiGen-shaped stand-in (random RoBERTa, built from config) registered once: the document ranking is the
    order of its own scores, and the classifier artifact is in the mask's lineage."""
    from evalkit import make_toxigen

    from ifguide_cli.core.classifiers import load_classifier, register_classifier, resolve_classifier

    ws, dataset = env["ws"], env["dataset"]
    make_toxigen(env["tmp"] / "toxigen")
    registered, _ = register_classifier(ws, "toxigen-roberta", path=str(env["tmp"] / "toxigen"))
    art, _ = build_classifier_mask(ws, dataset.id, ClassifierMaskConfig(classifier="toxigen-roberta", level="document",
                                                                         threshold=0.0, device="cpu"))
    assert art.parents == [dataset.id, registered.id] and art.config["classifier"]["artifact"] == registered.id
    scores = load_classifier(resolve_classifier("toxigen-roberta", ws)).score(DOCS)["toxicity"]
    ranking = np.asarray(load_safetensors_array(art.file(MASK_FILE), "ranking"))
    assert ranking.tolist() == np.argsort(-np.float32(scores), kind="stable").tolist()
    assert art.summary["documents_flagged"] == len(DOCS)  # threshold 0: every document


def test_show_and_export_of_a_word_list_mask_need_no_scores(env, cli, workspace_dir, tmp_path):
    """A mask no scores made: `show --scores` says why there is no heat; `export` (heat on by default) is quiet."""
    words = tmp_path / "w.txt"
    words.write_text("idiot\n")
    made = cli("--json", "mask", "wordlist", "--data", str(env["corpus"]), "--tokenizer", "tiny", "--wordlist", str(words))
    mask_id = made.data["id"]
    shown = cli("--json", "mask", "show", mask_id, "--scores")
    assert shown.data["scores"] is None and "not from influence scores" in shown.data["warnings"][0]
    page = tmp_path / "m.html"
    exported = cli("--json", "mask", "export", mask_id, "--html", str(page), "--top", "2")
    assert exported.data["warnings"] == [] and "[[" not in page.read_text() and 'class="m"' in page.read_text()
    assert "word list" in page.read_text() and "quantile p" not in page.read_text()  # its own terms, not Alg. 1's


def test_a_classifier_answering_nan_is_refused(env, monkeypatch):
    from ifguide_cli.core.errors import IfguideError

    _stub(monkeypatch, lambda t: float("nan"))
    with pytest.raises(IfguideError, match="scored 5 text"):
        build_classifier_mask(env["ws"], env["dataset"].id, ClassifierMaskConfig(level="document"))
