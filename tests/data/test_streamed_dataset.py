"""The data stage streams: a dataset artifact is written a block of rows at a time, and its files are byte for byte
the files the in-memory build wrote before (the digests below were recorded by running main's code at 552481b,
which held the whole corpus and saved it with safetensors' own `save_file`, on the same inputs)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from ifguide_cli.core.data import layout

WORDS = ["Café", "crème", "naïve", "déjà", "vu", "😀", "🚀", "日本語", "the", "a", "longer", "row", "of", "words", "fin"]


def write_corpus(path, docs: int = 300):
    """A deterministic corpus: documents of 1 to ~60 words (some longer than a row, a few empty), labelled 0/1."""
    lines = []
    for i in range(docs):
        n = 0 if i % 37 == 5 else 1 + (i * 7919) % (60 if i % 5 == 0 else 12)
        text = " ".join(WORDS[(i * 31 + j * 17) % len(WORDS)] for j in range(n))
        lines.append(json.dumps({"text": text, "y": (i * 13) % 3 == 0}, ensure_ascii=False))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


CASES = {
    "tiny": ("tiny", {}),
    "documents": ("corpus", {"seq_len": 16, "layout": "documents", "overflow": "split", "label_field": "y"}),
    "truncate": ("corpus", {"seq_len": 16, "layout": "documents", "overflow": "truncate"}),
    "packed": ("corpus", {"seq_len": 16, "layout": "packed", "label_field": "y"}),
    "heldout": ("corpus", {"seq_len": 24, "layout": "documents", "label_field": "y", "heldout": 0.1}),
    "heldout-unlabelled": ("corpus", {"seq_len": 24, "layout": "documents", "heldout": 7}),
    "fitted": ("corpus", {}),
}


def file_digests(art) -> dict[str, str]:
    """sha256 of every file of a dataset artifact but its manifest (which records times)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:16] for p in sorted(art.path.iterdir())
            if p.is_file() and p.name != "manifest.json"}


def build(ws, tmp_path, case: str):
    from ifguide_cli.core.data import resolve_corpus
    from ifguide_cli.core.models import resolve_model

    source, options = CASES[case]
    data = "tiny" if source == "tiny" else str(write_corpus(tmp_path / "corpus.jsonl"))
    seq_len = options.pop("seq_len", None) if (options := dict(options)) else None
    return resolve_corpus(ws, data, resolve_model("tiny"), seq_len, **options).artifact


def retokenized(ws, art):
    from ifguide_cli.core.data.retokenize import RetokenizeRefs, RetokenizeStage
    from ifguide_cli.core.stage import run_stage

    stage = RetokenizeStage()
    inputs = stage.inputs(ws, RetokenizeRefs(art, "tiny", seq_len=12))
    return run_stage(ws, stage, inputs, None).artifact


# case: (artifact id, sha256[:16] of each file, summary figures), recorded with main's code at 552481b
EXPECTED = {
    "tiny": ("22367a50506a", {"input_ids.safetensors": "9b36d4eada8aac38", "rows.safetensors": "97d222df751db30c", "texts.bin": "25cc3d264a7d0fde"},
        {"rows": 3000, "documents": 3000, "seq_len": 64, "tokens": 134858, "label_positive_rows": 270, "split_documents": 0, "truncated_tokens": 9, "skipped_empty": 0}),
    "documents": ("ab566e8f0bd7", {"input_ids.safetensors": "1aeb36fc723243ea", "rows.safetensors": "1fb8a1c707c86821", "texts.bin": "8ca65d9d0fde36b5"},
        {"rows": 822, "documents": 292, "seq_len": 16, "tokens": 11140, "label_positive_rows": 245, "split_documents": 201, "truncated_tokens": 0, "skipped_empty": 8}),
    "documents-retokenized": ("0ce581cd17b0", {"input_ids.safetensors": "124b466de1bd98cf", "rows.safetensors": "5fb08dbc62bad170", "texts.bin": "8ca65d9d0fde36b5"},
        {"rows": 1038, "documents": 292, "seq_len": 12, "tokens": 11126, "label_positive_rows": 309, "split_documents": 215, "truncated_tokens": 0, "skipped_empty": 0}),
    "truncate": ("0b5e015eb97f", {"input_ids.safetensors": "f3028d021f6e5692", "rows.safetensors": "2e5338d0370d3cf3", "texts.bin": "7bc42f613e339d8e"},
        {"rows": 292, "documents": 292, "seq_len": 16, "tokens": 4029, "split_documents": 0, "truncated_tokens": 6920, "skipped_empty": 8}),
    "packed": ("d2470dcbf20b", {"input_ids.safetensors": "93858c94f647a0f2", "rows.safetensors": "9d478e77231ae3ac", "texts.bin": "8ca65d9d0fde36b5"},
        {"rows": 696, "documents": 291, "seq_len": 16, "tokens": 11136, "label_positive_rows": 281, "split_documents": 0, "truncated_tokens": 0, "skipped_empty": 8}),
    "packed-retokenized": ("3cbd2c6f8693", {"input_ids.safetensors": "cc9e50ec208385f2", "rows.safetensors": "af1aff833029b1c1", "texts.bin": "7871c2a258ebf627"},
        {"rows": 928, "documents": 291, "seq_len": 12, "tokens": 11136, "split_documents": 0, "truncated_tokens": 0, "skipped_empty": 0}),
    "heldout": ("8b627ebe536c", {"heldout.jsonl": "29b42a12068e542e", "heldout_prompts.jsonl": "35112d45c1a98368", "input_ids.safetensors": "e2ba0a824484cb78", "rows.safetensors": "816d2be792aab260", "texts.bin": "e7bd71b85024a011"},
        {"rows": 544, "documents": 263, "seq_len": 24, "tokens": 10178, "label_positive_rows": 165, "heldout_documents": 30, "split_documents": 131, "truncated_tokens": 0, "skipped_empty": 7}),
    "heldout-unlabelled": ("2c091114a002", {"heldout.jsonl": "3cddb403deafbdee", "heldout_prompts.jsonl": "f2e261635b2ef133", "input_ids.safetensors": "525b77f1db3fae47", "rows.safetensors": "1a59b331aa5ac2b3", "texts.bin": "44efb72b84549812"},
        {"rows": 580, "documents": 285, "seq_len": 24, "tokens": 10821, "heldout_documents": 7, "split_documents": 144, "truncated_tokens": 0, "skipped_empty": 8}),
    "fitted": ("d21b5768c7c1", {"input_ids.safetensors": "04c4f86a80cc0fad", "rows.safetensors": "d81bfb14afb811df", "texts.bin": "8ca65d9d0fde36b5"},
        {"rows": 305, "documents": 292, "seq_len": 144, "tokens": 11150, "split_documents": 13, "truncated_tokens": 0, "skipped_empty": 8}),
}


def assert_as_recorded(art, case: str) -> None:
    art_id, files, figures = EXPECTED[case]
    assert file_digests(art) == files
    assert {k: art.summary.get(k) for k in figures} == figures
    assert art.id == art_id


@pytest.mark.parametrize(("case", "block_rows"), [("tiny", 7)] + [(case, rows) for case in ("documents", "truncate", "packed",
                         "heldout", "heldout-unlabelled", "fitted") for rows in (7, layout.BLOCK_ROWS)])
def test_streamed_files_are_byte_for_byte_the_in_memory_ones(ws, tmp_path, monkeypatch, case, block_rows):
    """Whatever the block size (7 rows: blocks end inside documents, packed rows and label runs; the tiny corpus's
    3,000 rows make three blocks of the default size too), the same files."""
    monkeypatch.setattr(layout, "BLOCK_ROWS", block_rows)
    art = build(ws, tmp_path, case)
    assert_as_recorded(art, case)
    if case in ("documents", "packed"):  # `mask transfer`'s data: the stored text tokenized again, streamed the same way
        assert_as_recorded(retokenized(ws, art), f"{case}-retokenized")


def test_the_build_holds_one_block_of_rows(ws, tmp_path, monkeypatch):
    """The sink receives blocks of at most BLOCK_ROWS rows, and each is in its raw spool file before the next is made:
    the builder never holds more than the open block."""
    from ifguide_cli.core.data.rowfiles import DatasetFiles

    monkeypatch.setattr(layout, "BLOCK_ROWS", 5)
    seen = []
    write = DatasetFiles.write

    def spy(self, block):
        on_disk = self.tokens["input_ids"].fh.tell()
        seen.append((block.rows, on_disk, block.input_ids.shape, len(block.columns["piece_doc_id"])))
        write(self, block)

    monkeypatch.setattr(DatasetFiles, "write", spy)
    art = build(ws, tmp_path, "packed")
    rows = art.summary["rows"]
    assert [r for r, *_ in seen] == [5] * (rows // 5) + ([rows % 5] if rows % 5 else [])
    assert [on_disk for _, on_disk, *_ in seen] == [i * 5 * 16 * 4 for i in range(len(seen))]  # int32 ids, 16 a row
    assert all(shape == (n, 16) for n, _, shape, _ in seen)
    assert sum(p for *_, p in seen) == len(np.asarray(_rows_file(art)["piece_doc_id"]))
    assert not (art.path / ".rows-spool").exists()


def _rows_file(art):
    from safetensors.numpy import load_file

    return load_file(str(art.path / "rows.safetensors"))


def test_memory_rows_join_blocks_into_the_same_corpus(monkeypatch, tmp_path):
    """`tokenize_corpus` (rows in memory) gives the same tensors and source map whatever the block size."""
    from ifguide_cli.core.data import CorpusConfig, Source, iter_documents, tokenize_corpus
    from ifguide_cli.core.models import load_tokenizer, resolve_model

    tok = load_tokenizer(resolve_model("tiny"))
    cfg = CorpusConfig(layout="packed", seq_len=16, label_field="y")
    source = Source(str(write_corpus(tmp_path / "c.jsonl", 80)))
    whole = tokenize_corpus(iter_documents(source, "text", "y"), tok, cfg)
    monkeypatch.setattr(layout, "BLOCK_ROWS", 3)
    blocks = tokenize_corpus(iter_documents(source, "text", "y"), tok, cfg)
    assert whole.shape[0] > 3 and whole.input_ids.dtype == blocks.input_ids.dtype
    assert (whole.input_ids == blocks.input_ids).all() and (whole.labels == blocks.labels).all()
    assert whole.rows.columns.keys() == blocks.rows.columns.keys()
    assert all((whole.rows.columns[k] == blocks.rows.columns[k]).all() for k in whole.rows.columns)
    assert whole.stats == blocks.stats and whole.rows.texts == blocks.rows.texts


def test_joined_safetensors_are_what_save_file_writes(tmp_path):
    """Tensors of several dtypes (and an empty one), joined from raw files: the bytes safetensors' save_file writes."""
    from safetensors.numpy import save_file

    from ifguide_cli.core.masking.scorefile import join_safetensors

    tensors = {"zeta": np.arange(6, dtype=np.int64), "ids": np.arange(12, dtype=np.int32).reshape(3, 4),
               "alpha": np.arange(5, dtype=np.int64), "mask": np.ones((3, 4), dtype=np.uint8),
               "labels": np.array([1, 0, 1], dtype=np.uint8), "empty": np.zeros(0, dtype=np.int64)}
    names = {np.dtype(np.int64): "I64", np.dtype(np.int32): "I32", np.dtype(np.uint8): "U8"}
    parts = {}
    for name, arr in tensors.items():
        (tmp_path / name).write_bytes(arr.tobytes())
        parts[name] = (names[arr.dtype], arr.shape, tmp_path / name)
    join_safetensors(tmp_path / "joined.safetensors", parts)
    save_file(tensors, str(tmp_path / "saved.safetensors"))
    assert (tmp_path / "joined.safetensors").read_bytes() == (tmp_path / "saved.safetensors").read_bytes()


@pytest.fixture
def owt_standins(tmp_path, monkeypatch):
    """$IFGUIDE_DATA_DIR with the stand-in OWT chunks (8 tokens each), the arrow caches kept in tmp_path."""
    import datasets
    from paper_standins import data_dir

    from ifguide_cli.core.paper import subsets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    monkeypatch.setenv(subsets.DATA_DIR_ENV, str(data_dir(tmp_path / "hub-data", owt_width=8)))


# recorded with main's code at 552481b (the chunks read whole, then saved with save_file)
CHUNK_EXPECTED = {"owt-test": ("38a930cdbce0", "9c764a131e783e09", 4883), "owt-train-1b": ("d448ca70918b", "b2f92a0372d7590b", 2100)}


def test_reference_chunks_are_written_a_block_at_a_time_to_the_same_file(ws, owt_standins, monkeypatch):
    """The pre-tokenized chunk subsets stream too (blocks of 1,024 chunks; 2,100 ends inside one): the same file."""
    from ifguide_cli.core.data import resolve_corpus
    from ifguide_cli.core.data.rowfiles import _RawTensor
    from ifguide_cli.core.models import resolve_model

    appended = []
    append = _RawTensor.append
    monkeypatch.setattr(_RawTensor, "append", lambda self, values: (appended.append(len(values)), append(self, values)))
    for name, max_examples in (("owt-test", None), ("owt-train-1b", 2100)):
        art = resolve_corpus(ws, name, resolve_model("tiny"), None, max_examples=max_examples).artifact
        art_id, digest, rows = CHUNK_EXPECTED[name]
        assert file_digests(art) == {"input_ids.safetensors": digest}
        assert (art.id, art.summary["rows"], art.summary["tokens"]) == (art_id, rows, rows * 8)
    assert max(appended) == 1024 and sum(appended) == 2 * (4883 + 2100)  # ids and mask, a block at a time
