"""A local corpus is identified by the sha256 of its bytes: the same content is the same dataset (rewritten, copied),
new content is a new one and an artifact of the old content says the file changed; a command that leaves the layout
out reuses the layout chosen first instead of fitting another."""

from __future__ import annotations

import json
import os

import pytest

from ifguide_cli.core.data import content, resolve_corpus
from ifguide_cli.core.data.stage import recorded_dataset
from ifguide_cli.core.errors import IfguideError

DOCS = [{"text": f"document number {i} says something plain and long enough to tokenize " * (1 + i % 3),
         "toxic": i % 4 == 0} for i in range(12)]


def _pair(result):
    """A stage result as (artifact, reused)."""
    return result.artifact, result.reused


def _write(path, docs=DOCS):
    path.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    return path


def test_a_file_is_hashed_once_per_version(tmp_path, monkeypatch):
    reads = []
    real = content.sha256_file
    monkeypatch.setattr(content, "sha256_file", lambda p: reads.append(p) or real(p))
    path = _write(tmp_path / "c.jsonl")
    first = content.content_sha256(path)
    content._SEEN.clear()  # a new process: the digest comes from the cache file
    assert content.content_sha256(path) == first and len(reads) == 1
    path.write_bytes(path.read_bytes())  # the same bytes written again: hashed again, same digest
    assert content.content_sha256(path) == first and len(reads) == 2
    _write(path, DOCS[:3])
    assert content.content_sha256(path) != first and len(reads) == 3


def test_identical_bytes_reuse_the_dataset_and_new_content_does_not(ws, mref, tmp_path):
    path = _write(tmp_path / "c.jsonl")
    art, reused = _pair(resolve_corpus(ws, str(path), mref, 16, layout="documents", label_field="toxic"))
    assert not reused
    stamp = path.stat().st_mtime_ns
    path.write_bytes(path.read_bytes())
    os.utime(path, ns=(stamp + 10**9, stamp + 10**9))
    assert _pair(resolve_corpus(ws, str(path), mref, 16, layout="documents", label_field="toxic")) == (art, True)
    copy = _write(tmp_path / "elsewhere.jsonl")
    assert _pair(resolve_corpus(ws, str(copy), mref, 16, layout="documents", label_field="toxic")) == (art, True)
    _write(path, DOCS[:6])
    changed, reused = _pair(resolve_corpus(ws, str(path), mref, 16, layout="documents", label_field="toxic"))
    assert not reused and changed.id != art.id


def test_leaving_the_layout_out_reuses_the_first_one(ws, mref, tmp_path):
    path = _write(tmp_path / "c.jsonl")
    art, _ = _pair(resolve_corpus(ws, str(path), mref, 24, layout="documents", label_field="toxic"))
    assert _pair(resolve_corpus(ws, str(path), mref)) == (art, True)  # not a fitted row length, not a dataset without labels
    assert _pair(resolve_corpus(ws, str(path), mref, 24)) == (art, True)
    other, reused = _pair(resolve_corpus(ws, str(path), mref, 32, layout="documents"))
    assert not reused
    with pytest.raises(IfguideError) as err:
        resolve_corpus(ws, str(path), mref)
    line = err.value.one_line()
    assert "2 layouts" in line and art.id in line and other.id in line and "--seq-len" in line and "--data" in line
    assert _pair(resolve_corpus(ws, str(path), mref, 32)) == (other, True)  # the option picks one


def test_an_artifact_of_the_old_content_says_the_file_changed(ws, mref, tmp_path):
    path = _write(tmp_path / "c.jsonl")
    old, _ = _pair(resolve_corpus(ws, str(path), mref, 16, layout="documents"))
    mask, _ = ws.create("masks", {"dataset": old.id, "test": 1}, [old.id], lambda ctx: {})
    _write(path, DOCS[:5])
    new, _ = _pair(resolve_corpus(ws, str(path), mref, 16, layout="documents"))
    with pytest.raises(IfguideError) as err:
        recorded_dataset(ws, mask, new, what=f"mask {mask.id}", hint="recompute it")
    line = err.value.one_line()
    assert "changed since mask" in line and f"--data {old.id}" in line
    unrelated, _ = _pair(resolve_corpus(ws, str(_write(tmp_path / "other.jsonl", DOCS[:4])), mref, 16, layout="documents"))
    with pytest.raises(IfguideError) as err:
        recorded_dataset(ws, mask, unrelated, what=f"mask {mask.id}", hint="recompute it")
    assert f"not {unrelated.id}" in err.value.one_line() and f"pass --data {old.id}" in err.value.one_line()
