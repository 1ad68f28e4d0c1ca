"""The data layer: reading local files with their line numbers, laying documents out as rows, each row's source
map, labels and how a ranking finds them, the dataset artifact's reuse and its one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ifguide_cli.core.data import (
    CorpusConfig,
    Source,
    default_corpus_config,
    iter_documents,
    label_metrics,
    load_corpus,
    load_records,
    parse_label,
    resolve_corpus,
    row_labels,
    row_source,
    tokenize_corpus,
)
from ifguide_cli.core.errors import IfguideError

DOCS = [
    "Café crème, naïve façade — déjà vu.",
    "Emoji time 😀🎉 and more 🚀 here",
    "short",
    "A much longer document that goes on and on, with many words, so that it needs more than one row of tokens "
    "when the rows are short; it ends here with an accent: fin élégante.",
    "日本語のテキストも大丈夫です",
]


@pytest.fixture(scope="module")
def tok():
    from ifguide_cli.core.models import load_tokenizer, resolve_model

    return load_tokenizer(resolve_model("tiny"))


def write_jsonl(path, records, blank_after: int | None = None):
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    if blank_after is not None:
        lines.insert(blank_after, "")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _one_line(exc_info, *needles):
    line = exc_info.value.one_line()
    assert "\n" not in line
    for needle in needles:
        assert needle in line, line
    return line


# ---- reading files -------------------------------------------------------------------------
def test_positions_are_file_lines_or_record_numbers(tmp_path):
    jsonl = write_jsonl(tmp_path / "c.jsonl", [{"text": t} for t in DOCS[:3]], blank_after=1)
    assert [(r.index, r.line) for r in Source(str(jsonl)).records()] == [(0, 1), (1, 3), (2, 4)]
    txt = tmp_path / "c.txt"
    txt.write_text("one\n\n  \ntwo\r\nthree", encoding="utf-8")
    assert [(d.doc_id, d.line, d.text) for d in iter_documents(Source(str(txt)))] == [(0, 1, "one"), (1, 4, "two"), (2, 5, "three")]
    csv_file = tmp_path / "c.csv"
    csv_file.write_text('id,tweet,toxic\n1,"first\nspans two lines",1\n\n2,second,false\n', encoding="utf-8")
    docs = list(iter_documents(Source(str(csv_file)), "tweet", "toxic"))
    assert [(d.line, d.text, d.label) for d in docs] == [(2, "first\nspans two lines", True), (5, "second", False)]
    js = tmp_path / "c.json"
    js.write_text(json.dumps({"meta": 1, "data": [{"text": "a"}, {"text": "b"}]}), encoding="utf-8")
    src = Source(str(js))
    assert src.positions == "record" and [(d.line, d.text) for d in iter_documents(src)] == [(1, "a"), (2, "b")]


def test_parquet_and_folder_sources(tmp_path):
    import datasets

    ds = datasets.Dataset.from_list([{"body": t, "y": i % 2} for i, t in enumerate(DOCS)])
    ds.to_parquet(str(tmp_path / "c.parquet"))
    ds.save_to_disk(str(tmp_path / "folder"))
    for ref in (tmp_path / "c.parquet", tmp_path / "folder"):
        docs = list(iter_documents(Source(str(ref)), "body", "y"))
        assert [d.text for d in docs] == DOCS and [d.line for d in docs] == [1, 2, 3, 4, 5]
        assert [d.label for d in docs] == [False, True, False, True, False]


@pytest.mark.parametrize("name, content, needles", [
    ("latin1.jsonl", '{"text": "ok"}\n{"text": "caf\xe9"}\n'.encode("latin-1"), ("latin1.jsonl:2", "not UTF-8")),
    ("bin.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00", ("bin.txt", "binary")),
    ("list.jsonl", b'{"text": "ok"}\n["a", "b"]\n', ("list.jsonl:2", "JSON list", "not a record")),
    ("broken.jsonl", b'{"text": "ok"}\n{"text": \n', ("broken.jsonl:2", "not valid JSON")),
    ("notext.jsonl", b'{"text": "ok"}\n{"body": "x", "id": 3}\n', ("notext.jsonl:2", "no text field 'text'", "body, id", "--text-field")),
    ("number.jsonl", b'{"text": 42}\n', ("number.jsonl:1", "'text' is int", "not text")),
    ("lists.json", b'{"a": [1], "b": [2]}', ("lists.json", "lists under 'a', 'b'")),
    ("strings.json", b'["just", "strings"]', ("strings.json record 1", "JSON str")),
    ("latin1.csv", "text\nd\xe9j\xe0\n".encode("latin-1"), ("latin1.csv:2", "not UTF-8")),
    ("latin1.json", '[{"text": "x"},\n {"text": "\xe9"}]'.encode("latin-1"), ("latin1.json:2", "not UTF-8")),
    ("c.parquet", b"not parquet at all", ("c.parquet", "not a parquet file")),
    ("c.xml", b"<a/>", ("unsupported dataset file c.xml",)),
])
def test_bad_files_are_one_line(tmp_path, name, content, needles):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(IfguideError) as err:
        list(iter_documents(Source(str(path))))
    _one_line(err, *needles)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(IfguideError) as err:
        Source(str(tmp_path / "nope.jsonl"))
    _one_line(err, "no such file", "nope.jsonl")


def test_load_records_keeps_its_contract(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{"text": "one", "x": 1}, {"text": "two"}], blank_after=1)
    records, identity = load_records(str(path), limit=1)
    assert records == [{"text": "one", "x": 1}] and identity["source"] == "local" and len(identity["sha256"]) == 64


# ---- labels --------------------------------------------------------------------------------
@pytest.mark.parametrize("value, expected", [(True, True), (False, False), (1, True), (0, False), (1.0, True),
                                             ("true", True), ("False", False), (" 1 ", True), ("0", False)])
def test_label_values(value, expected):
    assert parse_label(value, "f.jsonl:3", "toxic") is expected


@pytest.mark.parametrize("value, needle", [(None, "has no value"), ("maybe", "'maybe'"), (2, "2"), ("yes", "'yes'")])
def test_bad_label_is_one_line_naming_file_line_and_field(value, needle):
    with pytest.raises(IfguideError) as err:
        parse_label(value, "f.jsonl:3", "toxic")
    _one_line(err, "f.jsonl:3", "'toxic'", needle)


def test_missing_label_in_a_file_names_its_line(tmp_path):
    path = write_jsonl(tmp_path / "l.jsonl", [{"text": "a", "toxic": 1}, {"text": "b"}])
    with pytest.raises(IfguideError) as err:
        list(iter_documents(Source(str(path)), "text", "toxic"))
    _one_line(err, "l.jsonl:2", "label field 'toxic'")


def test_label_metrics_known_answers():
    labels = np.array([1, 0, 1, 0, 0, 1, 0, 0], dtype=bool)
    perfect = label_metrics([0, 2, 5, 1, 3, 4, 6, 7], labels)
    assert perfect == {"label_documents": 8, "label_positive_documents": 3, "label_base_rate": 3 / 8,
                       "label_precision_at_k": 1.0, "label_auc": 1.0}
    worst = label_metrics([1, 3, 4, 6, 7, 0, 2, 5], labels)
    assert worst["label_precision_at_k"] == 0.0 and worst["label_auc"] == 0.0
    # positives at ranks 1, 3, 6 of 8: 2/3 in the top 3; pairs won: 5 + 4 + 2 of 15
    mixed = label_metrics([0, 1, 2, 3, 4, 5, 6, 7], labels)
    assert mixed["label_precision_at_k"] == pytest.approx(2 / 3) and mixed["label_auc"] == pytest.approx(11 / 15)


def test_label_metrics_ties_count_half():
    labels = np.array([1, 0, 1, 0], dtype=bool)
    # all scores equal: every positive–negative pair is a tie → AUC 0.5 whatever the order
    assert label_metrics([0, 1, 2, 3], labels, scores=np.zeros(4))["label_auc"] == 0.5
    # scores 3, 1, 1, 0: pairs (0,1) win, (0,3) win, (2,1) tie, (2,3) win → 3.5 / 4
    assert label_metrics([0, 1, 2, 3], labels, scores=np.array([3.0, 1, 1, 0]))["label_auc"] == pytest.approx(0.875)


def test_label_metrics_per_document_and_degenerate_cases():
    # rows 0,1 are document 7 (positive), rows 2,3 document 8; ranked 2, 0, 3, 1 → documents 8, 7
    out = label_metrics([2, 0, 3, 1], np.array([1, 1, 0, 0]), doc_ids=np.array([7, 7, 8, 8]))
    assert out["label_documents"] == 2 and out["label_positive_documents"] == 1
    assert out["label_precision_at_k"] == 0.0 and out["label_auc"] == 0.0
    none = label_metrics([0, 1], np.array([0, 0]))
    assert none["label_precision_at_k"] is None and none["label_auc"] is None and none["label_base_rate"] == 0.0
    assert label_metrics([0, 1], np.array([1, 1]))["label_auc"] is None


# ---- layouts -------------------------------------------------------------------------------
def _docs(texts, labels=None):
    from ifguide_cli.core.data import SourceDoc

    return [SourceDoc(i, 10 + i, t, None if labels is None else labels[i]) for i, t in enumerate(texts)]


def _ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]


def test_documents_layout_pads_each_document(tok):
    cfg = CorpusConfig(layout="documents", seq_len=40, overflow="truncate")
    corpus = tokenize_corpus(_docs(DOCS[:3]), tok, cfg)
    assert corpus.shape == (3, 40)
    for r, text in enumerate(DOCS[:3]):
        ids = _ids(tok, text)
        assert corpus.input_ids[r, : len(ids)].tolist() == ids
        assert corpus.attention_mask[r].sum() == len(ids) and corpus.attention_mask[r, len(ids):].sum() == 0
        assert (corpus.input_ids[r, len(ids):] == tok.pad_token_id).all()


def test_truncate_and_split(tok):
    long = DOCS[3]
    n = len(_ids(tok, long))
    cut = tokenize_corpus(_docs([long, "short"]), tok, CorpusConfig(layout="documents", seq_len=16, overflow="truncate"))
    assert cut.shape == (2, 16) and cut.stats["truncated_documents"] == 1 and cut.stats["truncated_tokens"] == n - 1 - 16
    split = tokenize_corpus(_docs([long, "short"]), tok, CorpusConfig(layout="documents", seq_len=16, overflow="split"))
    rows = -(-n // 16)
    assert split.shape == (rows + 1, 16) and split.stats["split_documents"] == 1
    doc_ids = split.rows.columns["doc_id"].tolist()
    assert doc_ids == [0] * rows + [1]
    flat = [t for r in range(rows) for t, a in zip(split.input_ids[r].tolist(), split.attention_mask[r].tolist(), strict=True) if a]
    assert flat == _ids(tok, long)  # the rows of a split document are the document, in order


def test_split_spans_tile_the_document_exactly(tok):
    text = "😀é" * 30 + " fin"  # byte-level tokens split these characters; rows must never split them
    corpus = tokenize_corpus(_docs([text]), tok, CorpusConfig(layout="documents", seq_len=8, overflow="split"))
    c, texts = corpus.rows.columns, corpus.rows.texts
    pieces = [texts[a:b].decode("utf-8") for a, b in zip(c["text_start"], c["text_end"], strict=True)]
    assert "".join(pieces) == text and len(pieces) == corpus.shape[0] > 1
    assert c["char_start"][0] == 0 and c["char_end"][-1] == len(text)
    assert (c["char_start"][1:] == c["char_end"][:-1]).all()


def test_packed_layout_concatenates_and_maps_pieces(tok):
    corpus = tokenize_corpus(_docs(DOCS), tok, CorpusConfig(layout="packed", seq_len=16))
    flat = [t for text in DOCS for t in _ids(tok, text)]
    n = len(flat) // 16
    assert corpus.shape == (n, 16) and corpus.input_ids.flatten().tolist() == flat[: n * 16]
    assert corpus.attention_mask.all()
    c = corpus.rows.columns
    assert len(c["piece_start"]) == n + 1 and c["piece_start"][0] == 0
    assert c["doc_id"][0] == 0 and c["piece_doc_id"][0] == 0


def test_max_examples_counts_rows(tok):
    corpus = tokenize_corpus(_docs(DOCS), tok, CorpusConfig(layout="documents", seq_len=8, overflow="split", max_examples=3))
    assert corpus.shape == (3, 8)


def test_empty_documents_are_left_out_and_counted(tok):
    corpus = tokenize_corpus(_docs(["one", "  ", "two"]), tok, CorpusConfig(layout="documents", seq_len=8))
    assert corpus.shape[0] == 2 and corpus.stats["skipped_empty"] == 1
    assert corpus.rows.columns["doc_id"].tolist() == [0, 2]


def test_labels_follow_rows(tok):
    corpus = tokenize_corpus(_docs([DOCS[3], "x"], [True, False]), tok,
                             CorpusConfig(layout="documents", seq_len=16, overflow="split", label_field="y"))
    assert corpus.labels.tolist() == [True] * (corpus.shape[0] - 1) + [False]
    assert corpus.planted_toxic is None


def test_unplanned_config_and_packed_overflow_are_refused(tok):
    with pytest.raises(ValueError):
        tokenize_corpus(_docs(["a"]), tok, CorpusConfig())
    with pytest.raises(IfguideError, match="--overflow split applies to the documents layout only"):
        CorpusConfig(layout="packed", overflow="split")
    with pytest.raises(IfguideError, match="--seq-len must be in"):
        CorpusConfig(seq_len=1)
    assert default_corpus_config("tiny", layout="packed").overflow is None


# ---- defaults ------------------------------------------------------------------------------
def test_tiny_defaults_are_todays_layout(tok):
    cfg = default_corpus_config("tiny")
    assert (cfg.layout, cfg.seq_len, cfg.overflow, cfg.label_field) == ("documents", 64, "truncate", "planted_toxic")
    records, _ = load_records("tiny")
    corpus = tokenize_corpus(iter_documents(Source("tiny"), cfg.text_field, cfg.label_field), tok, cfg)
    assert corpus.shape == (3000, 64)
    assert corpus.planted_toxic.tolist() == [bool(r["planted_toxic"]) for r in records]
    for i in (0, 1, 2999):
        ids = _ids(tok, records[i]["text"])[:64]
        assert corpus.input_ids[i, : len(ids)].tolist() == ids and int(corpus.attention_mask[i].sum()) == len(ids)
    held = default_corpus_config("tiny-heldout")
    assert (held.layout, held.seq_len, held.label_field) == ("documents", 64, None)
    owt = default_corpus_config("openwebtext")
    assert (owt.layout, owt.seq_len) == ("packed", 2048)


def test_short_documents_get_document_rows_fitted_to_them(ws, mref, tmp_path):
    from ifguide_cli.core import notes

    notes.reset()
    path = write_jsonl(tmp_path / "short.jsonl", [{"text": f"comment number {i} is short"} for i in range(50)])
    result = resolve_corpus(ws, str(path), mref)
    art, reused = result.artifact, result.reused
    assert not reused and art.config["layout"] == "documents" and art.config["overflow"] == "split"
    assert art.config["seq_len"] == 16 and art.summary["rows"] == 50
    assert "documents layout" in art.summary["layout_rule"] and any("documents layout" in n for n in notes.collected())


def test_long_documents_are_packed(ws, mref, tmp_path):
    path = write_jsonl(tmp_path / "long.jsonl", [{"text": "word " * 400} for _ in range(5)])
    art = resolve_corpus(ws, str(path), mref, max_seq_len=128).artifact
    assert art.config["layout"] == "packed" and art.config["seq_len"] == 128 and art.config["overflow"] is None


# ---- the artifact --------------------------------------------------------------------------
@pytest.fixture
def labelled(tmp_path):
    records = [{"text": t, "toxic": i % 2 == 1} for i, t in enumerate(DOCS)]
    return write_jsonl(tmp_path / "own.jsonl", records, blank_after=2)


def test_row_source_round_trip(ws, mref, labelled):
    art = resolve_corpus(ws, str(labelled), mref, 16, layout="documents", label_field="toxic").artifact
    lines = labelled.read_text(encoding="utf-8").split("\n")
    seen: dict[int, str] = {}
    for r in range(art.summary["rows"]):
        src = row_source(art, r)
        assert src["file"] == str(labelled.resolve()) and src["where"] == f"{labelled.resolve()}:{src['line']}"
        record = json.loads(lines[src["line"] - 1])
        assert record["text"][src["char_start"]: src["char_end"]] == src["text"]
        assert src["label"] is record["toxic"] and src["doc_chars"] == len(record["text"])
        seen[src["doc_id"]] = seen.get(src["doc_id"], "") + src["text"]
    assert seen == dict(enumerate(DOCS))  # every document, whole, emoji and accents included


def test_packed_row_source_lists_its_documents(ws, mref, labelled):
    art = resolve_corpus(ws, str(labelled), mref, 16, layout="packed").artifact
    src = row_source(art, 1)
    assert len(src["pieces"]) >= 1 and src["text"] == "\n".join(p["text"] for p in src["pieces"])
    for p in src["pieces"]:
        assert DOCS[p["doc_id"]][p["char_start"]: p["char_end"]] == p["text"]
    with pytest.raises(IfguideError, match="outside dataset"):
        row_source(art, art.summary["rows"])


def test_dataset_is_reused_and_contradictions_name_both_values(ws, mref, labelled):
    result = resolve_corpus(ws, str(labelled), mref, 16, layout="documents")
    first, reused = result.artifact, result.reused
    assert not reused
    result = resolve_corpus(ws, str(labelled), mref, 16, layout="documents")
    again, reused = result.artifact, result.reused
    assert reused and again.id == first.id
    result = resolve_corpus(ws, first.id, mref, None)
    by_id, reused = result.artifact, result.reused
    assert reused and by_id.id == first.id
    with pytest.raises(IfguideError) as err:
        resolve_corpus(ws, first.id, mref, 32)
    _one_line(err, first.id, "--seq-len 16", "--seq-len 32")
    with pytest.raises(IfguideError) as err:
        resolve_corpus(ws, first.id, mref, None, layout="packed")
    _one_line(err, "--layout documents", "--layout packed")
    # a dataset to prefer (e.g. the checkpoint's): reused for its source, checked against the options
    result = resolve_corpus(ws, str(labelled), mref, prefer=first)
    prefer, reused = result.artifact, result.reused
    assert reused and prefer.id == first.id
    with pytest.raises(IfguideError) as err:
        resolve_corpus(ws, str(labelled), mref, 32, prefer=first)
    _one_line(err, "--seq-len 16", "--seq-len 32")


def test_load_corpus_and_dataset_label_metrics(ws, mref, labelled):
    from ifguide_cli.core.data import dataset_label_metrics

    art = resolve_corpus(ws, str(labelled), mref, 16, layout="documents", overflow="split", label_field="toxic").artifact
    corpus = load_corpus(art)
    assert corpus.labels.tolist() == row_labels(art).tolist() and corpus.shape[1] == 16
    doc_of_row = np.array([row_source(art, r)["doc_id"] for r in range(corpus.shape[0])])
    ranking = np.argsort(-(doc_of_row % 2), kind="stable")  # positives (documents 1 and 3) first
    out = dataset_label_metrics(art, ranking)
    assert out["label_field"] == "toxic" and out["label_documents"] == 5 and out["label_positive_documents"] == 2
    assert out["label_precision_at_k"] == 1.0 and out["label_auc"] == 1.0
    result = resolve_corpus(ws, str(labelled), mref, 16, layout="documents", overflow="truncate")
    plain, reused = result.artifact, result.reused
    assert not reused and dataset_label_metrics(plain, ranking) == {}


def test_tiny_artifact_keeps_planted_toxic(ws, mref):
    from safetensors import safe_open

    from ifguide_cli.core.data import CORPUS_FILE

    art = resolve_corpus(ws, "tiny", mref, 32, max_examples=50).artifact
    with safe_open(str(art.file(CORPUS_FILE)), "np") as fh:
        assert {"input_ids", "attention_mask", "planted_toxic"} <= set(fh.keys())
    assert art.summary["label_field"] == "planted_toxic" and row_labels(art).shape == (50,)
    assert art.summary["planted_toxic_documents"] == int(row_labels(art).sum())


def test_dataset_without_source_map_says_how_to_rebuild(ws, mref):
    from safetensors.numpy import save_file

    from ifguide_cli.core.data import CORPUS_FILE

    def build(ctx):
        save_file({"input_ids": np.zeros((2, 4), np.int32), "attention_mask": np.ones((2, 4), np.uint8)},
                  str(ctx.staging / CORPUS_FILE))

    art, _ = ws.create("datasets", {"data": {"source": "registry", "name": "tiny"}, "tokenizer": "tiny", "seq_len": 4,
                                    "packing": False}, [], build)
    with pytest.raises(IfguideError) as err:
        row_source(art, 0)
    _one_line(err, "no row source map", "--force")
    assert row_labels(art) is None
    with pytest.raises(IfguideError) as err:
        resolve_corpus(ws, art.id, mref, None, layout="packed")
    _one_line(err, "--layout documents", "--layout packed")


def test_tokenizer_option_builds_with_that_tokenizer(ws, mref, labelled):
    art = resolve_corpus(ws, str(labelled), None, 16, layout="documents", tokenizer="tiny").artifact
    assert art.config["tokenizer"] == "tiny" and art.config["tokenizer_sha256"]
    with pytest.raises(IfguideError) as err:
        resolve_corpus(ws, str(labelled), None, 16)
    _one_line(err, "no tokenizer", "--tokenizer")
    with pytest.raises(IfguideError) as err:
        resolve_corpus(ws, str(labelled), mref, 16, tokenizer="nothing-here")
    _one_line(err, "unknown tokenizer 'nothing-here'")
