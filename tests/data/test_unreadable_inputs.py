"""Input files that cannot be read as a corpus or a query set: a pipe, a huge document or line, a corpus without
text, a query field that is not text: each is refused (or cut, with a note) in one line naming the file."""

from __future__ import annotations

import json
import os

import pytest
from clikit import assert_one_line_error

from ifguide_cli.core.errors import IfguideError


def test_a_pipe_given_as_data_is_refused_not_waited_on(tmp_path):
    from ifguide_cli.core.data.sources import Source

    os.mkfifo(tmp_path / "fifo.jsonl")
    with pytest.raises(IfguideError, match=r"fifo\.jsonl is not a regular file"):
        list(Source(str(tmp_path / "fifo.jsonl")).records())


def test_a_huge_document_is_cut_with_a_note_and_memory_stays_bounded(tmp_path, monkeypatch):
    from ifguide_cli.core import notes
    from ifguide_cli.core.data import sources

    monkeypatch.setattr(sources, "MAX_DOC_CHARS", 100)
    monkeypatch.setattr(sources, "MAX_LINE_BYTES", 1000)
    (tmp_path / "one.txt").write_text("é" * 5000 + "\nshort\n" + "x" * 300 + "\n")
    notes.reset()
    docs = list(sources.iter_documents(sources.Source(str(tmp_path / "one.txt"))))
    assert [len(d.text) for d in docs] == [100, 5, 100] and [d.line for d in docs] == [1, 2, 3]
    assert any("only its beginning is read" in n for n in notes.collected())  # the line was not read whole
    assert sum("only the first 100 are used" in n for n in notes.collected()) == 1  # one note, not one per document
    (tmp_path / "long.jsonl").write_text(json.dumps({"text": "y" * 2000}) + "\n")
    with pytest.raises(IfguideError, match=r"long\.jsonl:1 is longer than"):
        list(sources.Source(str(tmp_path / "long.jsonl")).records())


def test_a_corpus_without_text_is_named(tmp_path, cli):
    (tmp_path / "empty.jsonl").write_bytes(b"")
    assert_one_line_error(cli("train", "tiny", "--data", tmp_path / "empty.jsonl", "--seq-len", "64", "--max-steps", "1"),
                          "empty.jsonl", "no document with text")


def test_query_fields_that_are_not_text_are_one_line_naming_the_file(tmp_path):
    from ifguide_cli.core.data import load_queries

    path = tmp_path / "numbers.jsonl"
    path.write_text('{"prompt": "hi", "continuation": 5}\n')
    with pytest.raises(IfguideError, match=r"numbers\.jsonl.*continuation: int"):
        load_queries(str(path))
