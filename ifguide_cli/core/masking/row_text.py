"""A dataset's rows read back as text, token by token: what the cheap mask sources classify and search.

A classifier or a word list sees text and must mark tokens, so every token needs the text it stands for.
A token's piece is its decoded text, and a character split across byte-level tokens goes to the token where
it ends (`mask_render.whole_pieces`, the rule `mask show` displays by), so a segment's pieces join to its text
and a character offset in that text names one token. Special tokens (EOS, padding) belong to no segment and
are never marked. A packed row holds parts of several documents: its text tokens are cut at the EOS tokens
between them, and each part takes its document id from the dataset's row source map.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from ifguide_cli.core.masking.render import whole_pieces
from ifguide_cli.core.masking.stage import dataset_arrays

if TYPE_CHECKING:
    from ifguide_cli.core.store.workspace import Workspace


@dataclass
class Segment:
    """The text tokens of one source document within one row."""

    row: int
    doc: int  # the source document's id (the row's index for a dataset without a source map)
    positions: np.ndarray  # int64: the tokens' positions in the row
    pieces: list[str]  # decoded text per token; they join to the segment's text
    char_start: int = 0  # where the text starts in its document (the source map's span; 0 without one)

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @cached_property
    def offsets(self) -> np.ndarray:
        """Character offset of each token's start in `text`, then the text's length (one more than the tokens)."""
        return np.concatenate([[0], np.cumsum([len(p) for p in self.pieces])]).astype(np.int64)


class _Decoder:
    """`whole_pieces`'s decode_batch: id lists → strings, each single token decoded once and remembered."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.singles: dict[int, str] = {}

    def _decode(self, seqs: list[list[int]]) -> list[str]:
        return self.tokenizer.batch_decode(seqs, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def __call__(self, seqs: list[list[int]]) -> list[str]:
        missing = sorted({s[0] for s in seqs if len(s) == 1 and s[0] not in self.singles})
        self.singles.update(zip(missing, self._decode([[i] for i in missing]), strict=True))
        return [self.singles[s[0]] if len(s) == 1 else self._decode([s])[0] for s in seqs]


class RowText:
    """The rows of a `datasets` artifact as `Segment`s, read a block of rows at a time (memory-mapped tokens)."""

    def __init__(self, ws: Workspace, dataset):
        from ifguide_cli.core.tokenizer import resolve_tokenizer

        arrays = dataset_arrays(dataset)
        self.input_ids = arrays["input_ids"]
        self.attention = arrays.get("attention_mask")
        tokenizer = resolve_tokenizer(dataset.config["tokenizer"], ws).load()
        self.special = np.array(sorted(set(tokenizer.all_special_ids)), dtype=np.int64)
        self.decode = _Decoder(tokenizer)
        self.columns = _source_map(dataset)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.input_ids.shape)

    def text_positions(self, row: int) -> np.ndarray:
        """Positions of the row's text tokens: attended, not special."""
        ids = np.asarray(self.input_ids[row])
        keep = ~np.isin(ids, self.special)
        if self.attention is not None:
            keep &= np.asarray(self.attention[row]) != 0
        return np.flatnonzero(keep)

    def segments(self, row: int) -> Iterator[Segment]:
        """The row's documents (one for the documents layout; a packed row's parts, cut at special tokens)."""
        ids = np.asarray(self.input_ids[row]).astype(np.int64)
        positions = self.text_positions(row)
        docs = self.parts(row)
        runs = [positions]
        if len(docs) > 1:
            runs = np.split(positions, np.flatnonzero(np.diff(positions) > 1) + 1)
            if len(runs) != len(docs):  # a special token inside a text: the parts cannot be told apart
                runs, docs = [positions], docs[:1]
        for run, (doc, start) in zip(runs, docs, strict=True):
            if run.size:
                yield Segment(row, doc, run, whole_pieces(self.decode, ids[run].tolist()), start)

    def end_token(self, segment: Segment) -> int | None:
        """The position of the special token (EOS) that ends the segment's text in its row, if one does."""
        end = int(segment.positions[-1]) + 1
        if end < self.shape[1] and int(self.input_ids[segment.row, end]) in self.special:
            return end
        return None

    def parts(self, row: int) -> list[tuple[int, int]]:
        """(document id, character start in that document) of each document part of the row, in order."""
        c = self.columns
        if c is None:
            return [(row, 0)]
        if "piece_start" in c:
            lo, hi = int(c["piece_start"][row]), int(c["piece_start"][row + 1])
            parts = [(int(d), int(s)) for d, s in zip(c["piece_doc_id"][lo:hi], c["piece_char_start"][lo:hi], strict=True)]
            return parts or [(int(c["doc_id"][row]), int(c["char_start"][row]))]
        return [(int(c["doc_id"][row]), int(c["char_start"][row]))]


def _source_map(dataset) -> dict | None:
    """The row source map's columns (None for a dataset built before datasets kept one: each row is a document)."""
    from ifguide_cli.core.data import ROWS_FILE

    path = dataset.path / ROWS_FILE
    if not path.is_file():
        return None
    from safetensors.numpy import load_file

    return load_file(str(dataset.file(ROWS_FILE)))


def token_runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """(first, end) index pairs of the runs of True in a 1-D bool array (end exclusive)."""
    edges = np.diff(np.concatenate([[0], np.asarray(flags, dtype=np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))


def masked_spans(segment: Segment, mask_row: np.ndarray) -> list[tuple[int, int]]:
    """The character spans of `segment.text` held by its masked tokens (`mask_row`: the row's bool mask), adjacent
    masked tokens merged into one span; a token with no characters of its own (a split character went to the next
    token) adds nothing."""
    flags = np.asarray(mask_row)[segment.positions].astype(bool)
    spans = [(int(segment.offsets[a]), int(segment.offsets[b])) for a, b in token_runs(flags)]
    return [(a, b) for a, b in spans if b > a]
