"""How documents become the (rows × seq_len) token tensor, and where each row came from.

Two layouts:

- `documents`: one document per row, EOS appended, padded to `seq_len` (pad = the tokenizer's pad token,
  else EOS; attention 0 on padding). A longer document is cut (`overflow truncate`) or continued on
  further rows that keep its document id (`overflow split`; a remainder holding only the EOS is dropped).
- `packed`: documents (each + EOS) concatenated and cut into full rows; the last partial row is dropped
  (the paper's OpenWebText chunks: no padding, but a row holds parts of several documents).

Defaults serve real text in general: a row is the unit the mask ranks and shows, so `documents` is
chosen whenever most documents fit in one row (comments, tweets, reviews, paragraphs) — one row is then
one document, its label and its source line; `packed` only when most documents are longer than a row
(web pages, books), where one-per-row padding would waste most of the compute. An unset `seq_len` is
fitted to the documents (95% fit in one row). Both are read off the first 1,000 documents and recorded.

Every row keeps its source map: the document id and line of its (first) document, the character span of
its text within the document, and the text itself (`texts.bin`), so a row is shown whole — never decoded
token by token, which splits multi-byte characters. Spans of one document tile it without overlap: a
character cut between two rows' byte-level tokens belongs to the row where it ends.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Literal, Protocol

from ifguide_cli.core.config import Config, param
from ifguide_cli.core.data.sources import SourceDoc, is_packaged, is_token_subset, record_text
from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.progress import NULL

DEFAULT_MAX_SEQ_LEN = 2048  # the paper's row length; the longest row an unset --seq-len is fitted to
SAMPLE_DOCUMENTS = 1000  # documents read to choose an unset layout or row length
FIT_SHARE = 0.95  # a fitted row length holds this share of documents whole
PACK_SHARE = 0.8  # unset layout: `documents` when at least this share of documents fits in one row
ROW_MULTIPLE = 8  # fitted row lengths are multiples of 8 (tensor-core friendly)
MIN_SEQ_LEN = 16
TOKENIZE_BATCH = 1000
BLOCK_ROWS = 1024  # rows handed on at a time: 1024 × 2048 tokens are 10 MB of int32 ids + uint8 mask

_PACKAGED = {"layout": "documents", "seq_len": 64, "overflow": "truncate"}
_SOURCE_DEFAULTS = {
    "tiny": {**_PACKAGED, "label_field": "planted_toxic"},  # per-document rows with the planted ground truth
    "openwebtext": {"layout": "packed", "seq_len": DEFAULT_MAX_SEQ_LEN},  # the paper's pre-training chunks
}


@dataclass(frozen=True)
class CorpusConfig(Config):
    """How a dataset is laid out as rows: stored in the dataset artifact, the one place it lives."""

    layout: Literal["packed", "documents"] | None = param(None, "packed: documents concatenated into full rows; documents: one document per row, "
                                        "padded (default: documents when most documents fit in one row)", shown_default="by data")
    seq_len: int | None = param(None, "Tokens per row (default: 64 for tiny, 2048 packed, else fitted so that 95% of "
                                      "documents fit in one row)", low=2, shown_default="by data")
    overflow: Literal["truncate", "split"] | None = param(None, "documents layout: a document longer than a row is cut (truncate) or continued "
                                            "on more rows with the same document id (split)", shown_default="split")
    text_field: str = param("text", "Field holding the text (for `text`, a `content` or `document` field also works).")
    label_field: str | None = param(None, "Field with a 0/1 or true/false label per document: the mask is then scored "
                                          "against it (label precision@k and AUC).")
    max_examples: int | None = param(None, "Use at most this many rows (the first ones).", low=1)
    split: str | None = param(None, "Split of a hub dataset or save_to_disk folder.")
    tokenizer: str | None = param(None, "Tokenizer: tiny, a hub id, a local folder or a tokenizer artifact "
                                        "(default: the model's).")
    heldout: float | None = param(None, "Hold out documents from training (N documents, or a share below 1; seeded, per "
                                        "label): the default perplexity text and toxicity prompts of your own corpus.",
                                  low=0.0, low_open=True, shown_default="none")

    def check(self) -> None:
        if self.layout == "packed" and self.overflow is not None:
            raise IfguideError(f"--overflow {self.overflow} applies to the documents layout only, not --layout packed",
                               exit_code=2)

    def to_dict(self) -> dict:
        """The recorded options; `heldout` only when given, so datasets without a held-out split keep their ids."""
        out = super().to_dict()
        if out["heldout"] is None:
            del out["heldout"]
        return out

    @property
    def planned(self) -> bool:
        """Layout and row length are decided (see `plan_layout`)."""
        return self.layout is not None and self.seq_len is not None


def default_corpus_config(ref: str, **overrides) -> CorpusConfig:
    """The source's defaults under the options given (None = not given).

    The packaged `tiny` sets: 64-token document rows, truncated (the tiny corpus labelled by
    `planted_toxic`); the registry's `openwebtext`: packed 2048 (the paper); the reference's chunk subsets
    (owt-train-1b, …): packed, their chunk length; anything else: left to the data.
    """
    base = dict(_SOURCE_DEFAULTS.get(ref) or (_PACKAGED if is_packaged(ref) else {}))
    if is_token_subset(ref):
        base = {"layout": "packed"}  # the reference's pre-tokenized chunks: one per row, their own length
    given = {k: v for k, v in overrides.items() if v is not None}
    if given.get("layout") == "packed":
        base.pop("overflow", None)
    return CorpusConfig(**{**base, **given})


# ---- choosing what the config leaves open --------------------------------------------------
def plan_layout(config: CorpusConfig, lengths: Callable[[], list[int]], max_seq_len: int | None = None
                ) -> tuple[CorpusConfig, str | None]:
    """The config with layout, row length and overflow decided, and a sentence saying how (None when all were given).

    `lengths()` gives the token counts of a sample of documents (see `sample_lengths`); it is called only when
    something is left to the data. `max_seq_len` (e.g. the model's context) caps a fitted row length and is
    the row length of a packed layout left unset.
    """
    cap = max_seq_len or DEFAULT_MAX_SEQ_LEN
    if config.layout == "packed" and config.seq_len is None:
        return config.replace(seq_len=cap), f"packed rows of {cap} tokens"
    if config.planned:
        return _with_overflow(config), None
    sample = lengths()
    fitted = min(cap, max(MIN_SEQ_LEN, _round_up(_quantile(sample, FIT_SHARE), ROW_MULTIPLE)))
    layout = config.layout or ("documents" if _share(sample, config.seq_len or fitted) >= PACK_SHARE else "packed")
    seq_len = config.seq_len or (fitted if layout == "documents" else cap)
    why = f"{_share(sample, seq_len):.0%} of the first {len(sample):,} documents fit in one {seq_len}-token row"
    return _with_overflow(config.replace(layout=layout, seq_len=seq_len)), f"{layout} layout: {why}"


def _share(lengths: list[int], row: int) -> float:
    return sum(1 for x in lengths if x <= row) / len(lengths)


def _with_overflow(config: CorpusConfig) -> CorpusConfig:
    return config.replace(overflow=config.overflow or "split") if config.layout == "documents" else config


def sample_lengths(documents: Iterable[SourceDoc], tokenizer, limit: int = SAMPLE_DOCUMENTS, what: str = "the dataset"
                   ) -> list[int]:
    """Tokens (EOS included) of the first `limit` non-empty documents (`what`: the source, for the error of none)."""
    texts = []
    for doc in documents:
        if doc.text.strip():
            texts.append(doc.text)
            if len(texts) >= limit:
                break
    if not texts:
        raise IfguideError(f"{what} has no document with text", hint="check --text-field", exit_code=2)
    return [len(ids) + 1 for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def _quantile(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _round_up(x: int, multiple: int) -> int:
    return -(-x // multiple) * multiple


# ---- tokenizing ----------------------------------------------------------------------------
@dataclass
class RowMap:
    """Where each row came from. `columns` (int64, one per row): doc_id, line, char_start, char_end of the row's
    (first) document, doc_chars (that document's length) and text_start, text_end (the row text's bytes in
    `texts`); packed rows add piece_* columns (one per document part; row r's parts are piece_start[r] to
    piece_start[r + 1]). `texts` is None when it was written straight to a file."""

    columns: dict[str, Any]
    texts: bytes | None = None


@dataclass
class TokenizedCorpus:
    input_ids: Any  # torch.LongTensor (rows, seq_len)
    attention_mask: Any  # torch.LongTensor (rows, seq_len)
    planted_toxic: Any | None = None  # torch.BoolTensor (rows,): the tiny corpus's labels, under their historical name
    labels: Any | None = None  # torch.BoolTensor (rows,): the --label-field of each row's document
    rows: RowMap | None = None
    stats: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.input_ids.shape)


@dataclass
class RowBlock:
    """Consecutive finished rows, as the row builder hands them to a `RowSink`."""

    input_ids: Any  # numpy int32 (rows, seq_len)
    attention_mask: Any  # numpy uint8 (rows, seq_len)
    labels: Any  # numpy bool (rows,): a row is positive when any of its documents is
    columns: dict[str, Any]  # numpy int64 source-map columns (see `RowMap`); piece_start: each row's first piece

    @property
    def rows(self) -> int:
        return len(self.input_ids)


class RowSink(Protocol):
    """Where finished rows go, a block at a time: memory (`tokenize_corpus`) or the dataset artifact's files
    (`rowfiles.DatasetFiles`)."""

    def write(self, block: RowBlock) -> None: ...

    def close(self, tail: dict[str, Any]) -> None:
        """No more rows; `tail`: the last entries of columns that have one more entry than rows (piece_start's end)."""


@dataclass(frozen=True)
class CorpusTally:
    """What the dataset's summary says about the rows a sink received (counted as they went by)."""

    rows: int
    seq_len: int
    tokens: int  # attention-mask ones
    positive_labels: int | None  # rows with a positive label; None without a label field
    stats: dict  # skipped_empty, truncated_documents, truncated_tokens, split_documents, documents


def build_rows(records, tokenizer, config: CorpusConfig, sink: RowSink, reporter=NULL, *, text_sink: BinaryIO,
               what: str = "the dataset", block_rows: int | None = None) -> CorpusTally:
    """Tokenize documents (`SourceDoc`s, or record dicts) into rows, in batches, handing each `block_rows` finished
    rows with their source map to `sink` and each row's text to `text_sink`: memory holds one block, whatever the
    corpus's size (`block_rows`: default BLOCK_ROWS). `config` must be planned (layout and seq_len set)."""
    if not config.planned:
        raise ValueError("build_rows needs a planned config (layout and seq_len); see plan_layout")
    if not getattr(tokenizer, "is_fast", False):
        raise IfguideError(f"tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no fast (Rust) version",
                           hint="the row source map needs character offsets; use a tokenizer with a tokenizer.json",
                           exit_code=2)
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    builder = _RowBuilder(config, pad, text_sink, sink, block_rows or BLOCK_ROWS)
    total = len(records) if isinstance(records, list) else None
    with reporter.task("tokenizing", total=total) as task:
        for batch in batched(_documents(records, config), TOKENIZE_BATCH):
            enc = tokenizer([d.text for d in batch], add_special_tokens=False, return_offsets_mapping=True)
            for doc, ids, offsets in zip(batch, enc["input_ids"], enc["offset_mapping"], strict=True):
                if builder.full:
                    break
                builder.add(doc, [*ids, eos], offsets)
            task.advance(len(batch))
            if builder.full:
                break
    return builder.finish(what)


def tokenize_corpus(records, tokenizer, config: CorpusConfig, reporter=NULL, *, text_sink: BinaryIO | None = None,
                    what: str = "the dataset") -> TokenizedCorpus:
    """`build_rows` into memory: the rows as tensors with their source map (row texts go to `text_sink`, default:
    memory). For tests and small corpora; the data stage streams the rows to its files (`rowfiles.write_corpus`)."""
    texts = io.BytesIO()
    memory = _MemoryRows()
    tally = build_rows(records, tokenizer, config, memory, reporter, text_sink=texts if text_sink is None else text_sink,
                       what=what)
    return memory.corpus(config, tally, texts.getvalue() if text_sink is None else None)


def _documents(records, config: CorpusConfig) -> Iterator[SourceDoc]:
    """SourceDocs as given, or record dicts numbered in order (line = record number)."""
    from ifguide_cli.core.data.labels import parse_label

    for n, r in enumerate(records):
        if isinstance(r, SourceDoc):
            yield r
            continue
        where = f"record {n + 1}"
        label = None if config.label_field is None else parse_label(r.get(config.label_field), where, config.label_field)
        yield SourceDoc(n, n + 1, record_text(r, config.text_field, where), label)


def batched(items: Iterable, size: int) -> Iterator[list]:
    """Lists of `size` consecutive items (the last one shorter): streams in batches without holding the whole."""
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class _MemoryRows:
    """A `RowSink` that keeps every block, joined into one `TokenizedCorpus` at the end."""

    def __init__(self) -> None:
        self.blocks: list[RowBlock] = []
        self.tail: dict[str, Any] = {}

    def write(self, block: RowBlock) -> None:
        self.blocks.append(block)

    def close(self, tail: dict[str, Any]) -> None:
        self.tail = tail

    def corpus(self, config: CorpusConfig, tally: CorpusTally, texts: bytes | None) -> TokenizedCorpus:
        import numpy as np
        import torch

        def joined(get) -> Any:
            return np.concatenate([get(b) for b in self.blocks])

        columns = {name: np.concatenate([*(b.columns[name] for b in self.blocks), *([self.tail[name]] if name in self.tail else [])])
                   for name in self.blocks[0].columns}
        labels = None if config.label_field is None else torch.from_numpy(joined(lambda b: b.labels))
        return TokenizedCorpus(torch.from_numpy(joined(lambda b: b.input_ids).astype(np.int64)),
                               torch.from_numpy(joined(lambda b: b.attention_mask).astype(np.int64)),
                               labels if config.label_field == "planted_toxic" else None, labels,
                               RowMap(columns, texts), dict(tally.stats))


class _RowBuilder:
    """Places each document's tokens into rows and records the pieces (document parts) of each row; hands each
    `block_rows` finished rows to the sink and keeps only the open block."""

    def __init__(self, config: CorpusConfig, pad: int, text_sink: BinaryIO, sink: RowSink, block_rows: int):
        assert config.seq_len is not None, "rows are built from a planned layout (its seq_len set)"
        self.config, self.T, self.pad = config, config.seq_len, pad
        self.packed = config.layout == "packed"
        self.sink, self.block_rows = sink, block_rows
        self.rows = 0  # finished rows
        self.start = 0  # the open block's first row
        self.ids, self.att = self._new_block()
        self.fill = 0  # tokens in the open packed row
        self.open_pieces: list[tuple] = []  # pieces of the open packed row
        self.pieces: list[tuple] = []  # the open block's: (row, doc_id, line, char_start, char_end, doc_chars, text_start, text_end, label)
        self.text_sink = text_sink
        self.text_pos = 0
        self.written = {"pieces": 0, "tokens": 0, "positive": 0, "documents": 1}
        self.last_doc: int | None = None
        self.stats = {"skipped_empty": 0, "truncated_documents": 0, "truncated_tokens": 0, "split_documents": 0}

    @property
    def full(self) -> bool:
        return self.config.max_examples is not None and self.rows >= self.config.max_examples

    def add(self, doc: SourceDoc, ids: list[int], offsets: list[tuple[int, int]]) -> None:
        if not doc.text.strip():
            self.stats["skipped_empty"] += 1
            return
        if self.packed:
            self._pack(doc, ids, offsets)
        else:
            self._rows_of(doc, ids, offsets)

    def _rows_of(self, doc: SourceDoc, ids: list[int], offsets) -> None:
        n, T = len(offsets), self.T
        if self.config.overflow == "truncate" or len(ids) <= T:
            chunks = [(0, min(T, len(ids)))]
            if n > T:
                self.stats["truncated_documents"] += 1
                self.stats["truncated_tokens"] += n - T
        else:
            chunks = [(a, min(a + T, len(ids))) for a in range(0, n, T)]  # a remainder of only the EOS is dropped
            self.stats["split_documents"] += len(chunks) > 1
        span_end = 0
        for a, b in chunks:
            if self.full:
                return
            ids_row, att_row = self._row()
            ids_row[: b - a] = ids[a:b]
            att_row[: b - a] = 1
            span_end = self._piece(self.rows, doc, offsets, b, span_end, self.pieces)
            self._finish_row()

    def _pack(self, doc: SourceDoc, ids: list[int], offsets) -> None:
        pos, span_end, n = 0, 0, len(offsets)
        while pos < len(ids) and not self.full:
            take = min(self.T - self.fill, len(ids) - pos)
            ids_row, att_row = self._row()
            ids_row[self.fill: self.fill + take] = ids[pos: pos + take]
            att_row[self.fill: self.fill + take] = 1
            if pos < n:  # a part holding only the document's EOS has no text
                span_end = self._piece(self.rows, doc, offsets, pos + take, span_end, self.open_pieces)
            pos += take
            self.fill += take
            if self.fill == self.T:
                self.pieces += self.open_pieces
                self.open_pieces, self.fill = [], 0
                self._finish_row()

    def _piece(self, row: int, doc: SourceDoc, offsets, end_token: int, start: int, into: list) -> int:
        """Record the part of `doc` whose tokens end at `end_token` (exclusive); returns its character end. Spans are
        in the document's coordinates (`doc.char_offset`: where a stored part of it starts)."""
        end = len(doc.text) if end_token >= len(offsets) else max(start, offsets[end_token - 1][1])
        data = doc.text[start:end].encode("utf-8")
        self.text_sink.write(data)
        doc_chars = len(doc.text) if doc.doc_chars is None else doc.doc_chars
        into.append((row, doc.doc_id, doc.line, doc.char_offset + start, doc.char_offset + end, doc_chars, self.text_pos,
                     self.text_pos + len(data), doc.label))
        self.text_pos += len(data)
        return end

    def _new_block(self):
        import numpy as np

        return (np.full((self.block_rows, self.T), self.pad, dtype=np.int32),
                np.zeros((self.block_rows, self.T), dtype=np.uint8))

    def _row(self):
        """The open row's token ids and attention mask (views into the open block)."""
        return self.ids[self.rows - self.start], self.att[self.rows - self.start]

    def _finish_row(self) -> None:
        self.rows += 1
        if self.rows - self.start == self.block_rows:
            self._flush()

    def _flush(self) -> None:
        """Hand the open block's finished rows to the sink, with their source map, and open the next block."""
        import numpy as np

        n = self.rows - self.start
        if n == 0:
            return
        block = _block(self.ids[:n], self.att[:n], self.pieces, self.start, self.packed, self.written["pieces"])
        docs = block.columns["piece_doc_id" if self.packed else "doc_id"]
        if len(docs):
            changes = int(np.count_nonzero(np.diff(docs))) + (self.last_doc is not None and int(docs[0]) != self.last_doc)
            self.written["documents"] += changes
            self.last_doc = int(docs[-1])
        self.written["pieces"] += len(self.pieces)
        self.written["tokens"] += int(block.attention_mask.sum(dtype=np.int64))
        self.written["positive"] += int(block.labels.sum())
        self.sink.write(block)
        self.pieces, self.start = [], self.rows
        self.ids, self.att = self._new_block()

    def finish(self, what: str = "the dataset") -> CorpusTally:
        import numpy as np

        if self.rows == 0:
            if self.packed:
                raise IfguideError(f"the dataset has {self.fill} tokens, fewer than one {self.T}-token row",
                                   hint="lower --seq-len or use --layout documents", exit_code=2)
            raise IfguideError(f"{what} has no document with text", hint="check --text-field", exit_code=2)
        self._flush()
        self.sink.close({"piece_start": np.array([self.written["pieces"]], dtype=np.int64)} if self.packed else {})
        return CorpusTally(self.rows, self.T, self.written["tokens"],
                           None if self.config.label_field is None else self.written["positive"],
                           {**self.stats, "documents": self.written["documents"]})


_PIECE_FIELDS = ("row", "doc_id", "line", "char_start", "char_end", "doc_chars", "text_start", "text_end")
_ROW_FIELDS = _PIECE_FIELDS[1:]


def _block(ids, att, pieces: list[tuple], start: int, packed: bool, pieces_before: int) -> RowBlock:
    """Rows `start`… as a block: per-row columns (the row's first piece, -1 for a row without one) and labels; packed
    rows also get the piece table (piece_start counts the `pieces_before` of earlier blocks)."""
    import numpy as np

    rows = len(ids)
    width = len(_PIECE_FIELDS)
    table = np.array([p[:width] for p in pieces], dtype=np.int64).reshape(-1, width)
    piece_label = np.array([bool(p[width]) for p in pieces], dtype=bool)
    first = np.full(rows, -1, dtype=np.int64)
    row_of = table[:, 0] - start
    starts = np.flatnonzero(np.r_[True, row_of[1:] != row_of[:-1]]) if len(row_of) else np.zeros(0, dtype=np.int64)
    first[row_of[starts]] = starts
    columns = {}
    for j, name in enumerate(_ROW_FIELDS, start=1):
        col = np.full(rows, -1, dtype=np.int64)
        has = first >= 0
        col[has] = table[first[has], j]
        columns[name] = col
    labels = np.zeros(rows, dtype=bool)
    np.logical_or.at(labels, row_of, piece_label)  # a packed row is positive when any of its documents is
    if packed:
        columns["piece_start"] = (pieces_before + np.searchsorted(row_of, np.arange(rows))).astype(np.int64)
        for j, name in enumerate(_ROW_FIELDS, start=1):
            columns[f"piece_{name}"] = table[:, j].copy()
    return RowBlock(ids, att, labels, columns)
