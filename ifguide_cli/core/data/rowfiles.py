"""The dataset artifact's files written as the rows are made, so that the data stage's memory does not grow with the
corpus.

`DatasetFiles` (a `layout.RowSink`) appends each block of rows to one raw file per tensor in the staging folder
(token ids, attention mask, every source-map column, the labels); when the rows are done, the raw files are joined
into `input_ids.safetensors` and `rows.safetensors` (`scorefile.join_safetensors`: the header safetensors'
`save_file` writes for these tensors, then each tensor's bytes copied in a block at a time) and removed. Memory
holds one block of rows (`layout.BLOCK_ROWS`) whatever the corpus's size; the files are byte for byte the ones
saving the whole corpus at once with `save_file` writes (`tests/data/test_streamed_dataset.py` compares digests).
The staging folder holds the raw files and the joined ones at once: twice the artifact's size on disk, briefly.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ifguide_cli.core.data.layout import CorpusConfig, CorpusTally, RowBlock, build_rows
from ifguide_cli.core.masking.scorefile import join_safetensors
from ifguide_cli.core.progress import NULL
from ifguide_cli.core.store.artifact_files import CORPUS_FILE, ROWS_FILE, TEXTS_FILE

_SPOOL = ".rows-spool"  # the raw files, inside the staging folder until they are joined
_ST_NAMES = {"i8": "I64", "i4": "I32", "u1": "U8"}  # numpy dtype codes, byte order left out


class _RawTensor:
    """One tensor appended to a raw file, a block of rows at a time."""

    def __init__(self, path: Path, dtype, row_shape: tuple[int, ...] = ()):
        self.path, self.dtype, self.row_shape = path, np.dtype(dtype).newbyteorder("<"), row_shape
        self.rows = 0
        self.fh: BinaryIO = open(path, "wb")  # noqa: SIM115 -- closed by `part`, once every block is in

    def append(self, values) -> None:
        values = np.ascontiguousarray(values, dtype=self.dtype)
        self.fh.write(memoryview(values).cast("B"))
        self.rows += len(values)

    def part(self) -> tuple[str, tuple[int, ...], Path]:
        """(safetensors dtype, shape, raw file): what `join_safetensors` needs; the file is closed."""
        self.fh.close()
        return _ST_NAMES[self.dtype.str[1:]], (self.rows, *self.row_shape), self.path


class _Spool:
    """Raw tensor files in a folder of the staging folder, joined into .safetensors files when complete."""

    def __init__(self, staging: Path):
        self.folder = staging / _SPOOL
        self.folder.mkdir()

    def tensor(self, name: str, dtype, row_shape: tuple[int, ...] = ()) -> _RawTensor:
        return _RawTensor(self.folder / f"{name}.raw", dtype, row_shape)

    def join(self, path: Path, tensors: dict[str, _RawTensor]) -> dict[str, tuple[str, tuple[int, ...], Path]]:
        """Write `path` from the tensors' raw files; what each part was (dtype, shape, raw file)."""
        parts = {name: raw.part() for name, raw in tensors.items()}
        join_safetensors(path, parts)
        return parts

    def remove(self) -> None:
        shutil.rmtree(self.folder)


class DatasetFiles:
    """A `RowSink` writing a dataset artifact's `input_ids.safetensors` (input_ids int32, attention_mask uint8, and
    `planted_toxic` for the tiny corpus) and `rows.safetensors` (the source map, int64, and `labels` uint8 with a
    label field) into `folder`, a block of rows at a time."""

    def __init__(self, folder: Path, config: CorpusConfig):
        assert config.seq_len is not None, "rows are built from a planned layout (its seq_len set)"
        self.folder, self.spool = folder, _Spool(folder)
        self.tokens = {"input_ids": self.spool.tensor("input_ids", np.int32, (config.seq_len,)),
                       "attention_mask": self.spool.tensor("attention_mask", np.uint8, (config.seq_len,))}
        if config.label_field == "planted_toxic":  # the tiny corpus's labels, in its token file under their historical name
            self.tokens["planted_toxic"] = self.spool.tensor("planted_toxic", np.uint8)
        self.map: dict[str, _RawTensor] = {}
        if config.label_field is not None:
            self.map["labels"] = self.spool.tensor("labels", np.uint8)

    def write(self, block: RowBlock) -> None:
        self.tokens["input_ids"].append(block.input_ids)
        self.tokens["attention_mask"].append(block.attention_mask)
        if "planted_toxic" in self.tokens:
            self.tokens["planted_toxic"].append(block.labels)
        if "labels" in self.map:
            self.map["labels"].append(block.labels)
        self._columns(block.columns)

    def _columns(self, columns: dict[str, Any]) -> None:
        for name, values in columns.items():
            if name not in self.map:
                self.map[name] = self.spool.tensor(name, np.int64)
            self.map[name].append(values)

    def close(self, tail: dict[str, Any]) -> None:
        """Join the raw files into the artifact's files and remove them."""
        self._columns(tail)
        self.spool.join(self.folder / CORPUS_FILE, self.tokens)
        self.spool.join(self.folder / ROWS_FILE, self.map)
        self.spool.remove()


def write_corpus(records, tokenizer, config: CorpusConfig, folder: Path, reporter=NULL, *, what: str = "the dataset",
                 block_rows: int | None = None) -> CorpusTally:
    """Tokenize documents into a dataset artifact's files in `folder` (tokens, source map, `texts.bin`), streaming:
    one block of `block_rows` rows (default `layout.BLOCK_ROWS`) is in memory at a time."""
    with open(folder / TEXTS_FILE, "wb") as texts:
        return build_rows(records, tokenizer, config, DatasetFiles(folder, config), reporter, text_sink=texts, what=what,
                          block_rows=block_rows)


def write_chunks(folder: Path, blocks: Iterable) -> tuple[int, int]:
    """A reference subset's pre-tokenized chunks (`blocks`: arrays of rows × chunk length, at least one) as a dataset
    artifact's token file: int32 ids and an all-ones uint8 attention mask, like any corpus's; its (rows, chunk length)."""
    spool = _Spool(folder)
    tensors: dict[str, _RawTensor] = {}
    for block in blocks:
        if not tensors:
            tensors = {"input_ids": spool.tensor("input_ids", np.int32, block.shape[1:]),
                       "attention_mask": spool.tensor("attention_mask", np.uint8, block.shape[1:])}
        tensors["input_ids"].append(block)
        tensors["attention_mask"].append(np.ones(block.shape, dtype=np.uint8))
    rows, length = spool.join(folder / CORPUS_FILE, tensors)["input_ids"][1]
    spool.remove()
    return rows, length
