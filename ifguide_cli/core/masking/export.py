"""A mask leaves the tool: its rows as records with token ids, labels and per-token loss weights (`mask export --out`).

A team that trains with its own stack (a plain PyTorch loop, the HF Trainer, torchtitan, Megatron, litgpt)
needs the mask as data, aligned to the labels exactly as `ifguide train` uses it. One record per row of the
dataset the mask indexes (the unit `train` batches; with the `documents` layout a row is one document, or one
part of a long one): where it came from (file, line, document id, character span), its text, the character
spans its masked tokens hold, and the row's tensors. The files are written a block of rows at a time from the
memory-mapped tensors, so a large mask never has a whole-corpus copy in memory, and atomically (a temporary
name beside the target, then a rename).

Alignment (the one `core.training.objective` documents, paper Eq. 9): ``penalty[t]`` and ``loss_weight[t]``
belong to ``labels[t]`` BEFORE the shift — they weight the loss of predicting token t from the logits at
position t−1; position 0 is never predicted (weight 0), nor is padding (label −100, weight 0). The loss of a
batch is ``Σ_t loss_weight[t] · CE(logits[t−1], labels[t]) / N`` with N the number of ``labels[:, 1:] ≠ −100``
of the whole optimizer batch (masked tokens included), which is `penalty_loss(logits, labels, penalty, λ)`.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.masking.export_config import MaskExportConfig
from ifguide_cli.core.progress import NULL, Reporter
from ifguide_cli.core.store.artifact_files import IGNORE_INDEX, MASK_FILE

if TYPE_CHECKING:
    from ifguide_cli.core.store.workspace import Workspace

EXPORT_SCHEMA = "ifguide mask export v1"
BLOCK_ROWS = 256  # rows read, converted and written at a time
METADATA_KEY = "ifguide"  # the parquet schema's metadata key; the hf dataset's description holds the same JSON

ALIGNMENT = ("penalty[t] and loss_weight[t] belong to labels[t] before the shift: they weight the loss of predicting "
             "token t from the logits at position t-1. Position 0 is never predicted and padding (labels -100) has no "
             "loss: their loss_weight is 0. loss = sum_t loss_weight[t] * CE(logits[t-1], labels[t]) / N, with N the "
             "number of labels[:, 1:] != -100 in the whole optimizer batch (masked tokens included): ifguide's "
             "penalty objective (paper Eq. 9), ifguide_cli.api.penalty_loss(logits, labels, penalty, lam).")

COLUMNS = {
    "row": "int64: the row's index in the dataset artifact (what train batches; the mask's first axis)",
    "rank": "int64: the row's rank in the mask's ranking (0 = most toxic)",
    "doc_id": "int64: the source document of the row (its first one for a packed row)",
    "file": "string: the source file (or dataset) the document came from",
    "line": "int64: the document's line (or record number) in that file",
    "char_start": "int64: where the row's text starts in its document (characters)",
    "char_end": "int64: where it ends (exclusive)",
    "text": "string: the row's text as its tokens decode (a packed row: its document parts joined by newlines)",
    "masked_spans": "list<list<int64>>: [start, end) character spans of `text` held by masked tokens",
    "input_ids": "list<int32>: the row's token ids (seq_len, padding included)",
    "attention_mask": "list<int8>: 1 on tokens, 0 on padding",
    "labels": "list<int64>: input_ids with -100 on padding (not shifted)",
    "penalty": "list<bool>: the mask, aligned with labels (see alignment)",
    "loss_weight": "list<float32>: 1 for ordinary label tokens, -lambda (penalty) or 0 (filter) for masked ones, "
                   "0 where nothing is predicted (see alignment)",
}


@dataclass
class MaskRows:
    """A mask artifact with the dataset it indexes: the mask and tokens memory-mapped, read a block at a time."""

    art: Any
    dataset: Any
    mask: np.ndarray
    ranking: np.ndarray
    ws: Any

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.mask.shape)

    @cached_property
    def text(self):
        from ifguide_cli.core.masking.row_text import RowText

        return RowText(self.ws, self.dataset)

    @cached_property
    def sources(self):
        """The dataset's row source map (None for a dataset built before datasets kept one)."""
        from ifguide_cli.core.data import ROWS_FILE, RowSources

        return RowSources(self.dataset) if (self.dataset.path / ROWS_FILE).is_file() else None

    @cached_property
    def rank_of(self) -> np.ndarray:
        inv = np.empty(self.shape[0], dtype=np.int64)
        inv[self.ranking] = np.arange(self.shape[0])
        return inv


def open_mask(ws: Workspace, mask_ref: str, data_ref: str | None = None) -> MaskRows:
    """The mask MASK names with its dataset (the recorded one; `data_ref` for a mask of a plain score file)."""
    from ifguide_cli.core.data import recorded_dataset
    from ifguide_cli.core.masking.scorefile import load_safetensors_array, safetensors_keys

    art = ws.resolve(mask_ref, "masks")
    given = ws.resolve(data_ref, "datasets") if data_ref is not None else None
    dataset = recorded_dataset(ws, art, given, what=f"mask {art.id}", hint="leave out --data (the mask knows its dataset)")
    if dataset is None:
        raise IfguideError(f"mask {art.id} was made from a plain score file and records no dataset",
                           hint="pass --data DATASET (the dataset artifact the scores index)", exit_code=2)
    path = art.file(MASK_FILE)
    mask = load_safetensors_array(path, "mask")
    ranking = np.asarray(load_safetensors_array(path, "ranking")) if "ranking" in safetensors_keys(path) else np.arange(mask.shape[0])
    rows = MaskRows(art, dataset, mask, ranking, ws)
    if tuple(rows.text.shape) != rows.shape:
        raise IfguideError(f"mask {art.id} has shape {rows.shape} but dataset {dataset.id} has {tuple(rows.text.shape)}",
                           hint="pass the dataset the mask was made on", exit_code=2)
    return rows


def row_fields(rows: MaskRows, r: int) -> dict[str, Any]:
    """The row's source, text and masked character spans (`text` joins a packed row's parts with newlines)."""
    from ifguide_cli.core.masking.row_text import masked_spans

    texts, spans, start = [], [], 0
    mask_row = np.asarray(rows.mask[r])
    for seg in rows.text.segments(r):
        spans += [[a + start, b + start] for a, b in masked_spans(seg, mask_row)]
        texts.append(seg.text)
        start += len(seg.text) + 1
    src = rows.sources
    c = src.columns if src is not None else None
    return {"row": r, "rank": int(rows.rank_of[r]), "doc_id": int(c["doc_id"][r]) if c else r,
            "file": src.file if src else None, "line": int(c["line"][r]) if c else None,
            "char_start": int(c["char_start"][r]) if c else None, "char_end": int(c["char_end"][r]) if c else None,
            "text": "\n".join(texts), "masked_spans": spans}


def blocks(rows: MaskRows, config: MaskExportConfig, reporter: Reporter = NULL) -> Iterator[dict[str, Any]]:
    """Column blocks of `BLOCK_ROWS` records: per-record fields as lists, the row tensors as (B, T) numpy arrays."""
    import torch

    from ifguide_cli.core.training.objective import token_weights

    n = rows.shape[0]
    ids_all, att_all = rows.text.input_ids, rows.text.attention
    with reporter.task("exporting", total=n) as task:
        for r0 in range(0, n, BLOCK_ROWS):
            r1 = min(n, r0 + BLOCK_ROWS)
            ids = np.asarray(ids_all[r0:r1]).astype(np.int32)
            att = np.ones_like(ids, dtype=np.int8) if att_all is None else np.asarray(att_all[r0:r1]).astype(np.int8)
            labels = np.where(att == 0, IGNORE_INDEX, ids).astype(np.int64)
            penalty = np.asarray(rows.mask[r0:r1]).astype(bool)
            fields = [row_fields(rows, r) for r in range(r0, r1)]
            block: dict[str, Any] = {k: [f[k] for f in fields] for k in fields[0]}
            block.update(input_ids=ids, attention_mask=att, labels=labels, penalty=penalty,
                         loss_weight=token_weights(torch.from_numpy(labels), torch.from_numpy(penalty), config.lam,
                                                   config.suppression).numpy())
            yield block
            task.advance(r1 - r0)


def metadata(rows: MaskRows, config: MaskExportConfig) -> dict[str, Any]:
    """What the file says about itself: where it came from, the alignment and every column."""
    from ifguide_cli.core.training.objective import masked_weight

    return {"schema": EXPORT_SCHEMA, "mask": rows.art.id, "mask_name": rows.art.name, "dataset": rows.dataset.id,
            "tokenizer": rows.dataset.config.get("tokenizer"), "rows": rows.shape[0], "seq_len": rows.shape[1],
            "layout": rows.dataset.config.get("layout"), "suppression": config.suppression,
            "lambda": config.lam if config.suppression == "penalty" else None,
            "masked_weight": masked_weight(config.suppression, config.lam), "ignore_index": IGNORE_INDEX,
            "alignment": ALIGNMENT, "columns": COLUMNS}


# ---- writers ---------------------------------------------------------------------------------
def _arrow_schema(meta: dict[str, Any] | None = None):
    import pyarrow as pa

    schema = pa.schema([("row", pa.int64()), ("rank", pa.int64()), ("doc_id", pa.int64()), ("file", pa.string()),
                        ("line", pa.int64()), ("char_start", pa.int64()), ("char_end", pa.int64()), ("text", pa.string()),
                        ("masked_spans", pa.list_(pa.list_(pa.int64()))), ("input_ids", pa.list_(pa.int32())),
                        ("attention_mask", pa.list_(pa.int8())), ("labels", pa.list_(pa.int64())),
                        ("penalty", pa.list_(pa.bool_())), ("loss_weight", pa.list_(pa.float32()))])
    return schema if meta is None else schema.with_metadata({METADATA_KEY: json.dumps(meta)})


def _list_array(matrix: np.ndarray):
    """A (B, T) array as an arrow list column of B rows of T values (no per-row Python lists)."""
    import pyarrow as pa

    b, t = matrix.shape
    return pa.ListArray.from_arrays(pa.array(np.arange(0, b * t + 1, t, dtype=np.int32)), pa.array(matrix.reshape(-1)))


def _record_batch(block: dict[str, Any], schema):
    import pyarrow as pa

    arrays = [_list_array(block[f.name]) if isinstance(block[f.name], np.ndarray) else pa.array(block[f.name], f.type)
              for f in schema]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _write_parquet(path: Path, parts: Iterator[dict[str, Any]], meta: dict[str, Any]) -> None:
    import pyarrow.parquet as pq

    schema = _arrow_schema(meta)
    with pq.ParquetWriter(str(path), schema) as writer:
        for block in parts:
            writer.write_batch(_record_batch(block, schema))


def _write_jsonl(path: Path, parts: Iterator[dict[str, Any]], meta: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for block in parts:
            n = len(block["row"])
            for i in range(n):
                record = {k: (v[i].tolist() if isinstance(v, np.ndarray) else v[i]) for k, v in block.items()}
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")


def _write_hf(path: Path, parts: Iterator[dict[str, Any]], meta: dict[str, Any]) -> None:
    """A `datasets` folder: the records streamed into an arrow file, memory-mapped by `Dataset.from_file`, saved."""
    import pyarrow as pa
    from datasets import Dataset, DatasetInfo
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    scratch = path.with_name(path.name + ".arrow")
    schema = _arrow_schema()
    try:
        with pa.OSFile(str(scratch), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
            for block in parts:
                writer.write_batch(_record_batch(block, schema))
        ds = Dataset.from_file(str(scratch), info=DatasetInfo(description=json.dumps(meta)))
        quiet = are_progress_bars_disabled()
        disable_progress_bars()  # the command has its own progress
        try:
            ds.save_to_disk(str(path))
        finally:
            if not quiet:
                enable_progress_bars()
    finally:
        scratch.unlink(missing_ok=True)


_WRITERS = {"parquet": _write_parquet, "jsonl": _write_jsonl, "hf": _write_hf}


def check_export_path(ws: Workspace, out: str, fmt: str) -> Path:
    """Where the export goes: outside the workspace (a stored artifact is never changed), in an existing folder,
    not an existing folder (hf: not an existing non-empty folder). Checked before any work."""
    target = Path(out).expanduser().resolve()
    root = Path(ws.root).resolve()
    if target == root or root in target.parents:
        raise IfguideError(f"--out {out} is inside the workspace {root}",
                           hint="write the export outside the workspace: its folders hold stored artifacts", exit_code=2)
    if not target.parent.is_dir():
        raise IfguideError(f"--out {out}: folder {target.parent} does not exist", hint="create it or pass another path",
                           exit_code=2)
    if fmt == "hf" and target.exists() and not (target.is_dir() and not any(target.iterdir())):
        raise IfguideError(f"--out {out} already exists", hint="an hf export is a new folder: remove it or pass another path",
                           exit_code=2)
    if fmt != "hf" and target.is_dir():
        raise IfguideError(f"--out {out} is a folder", hint=f"pass a file path, e.g. mask.{fmt}", exit_code=2)
    return target


def export_mask(ws: Workspace, mask_ref: str, out: str, config: MaskExportConfig, *, data_ref: str | None = None,
                reporter: Reporter = NULL) -> dict[str, Any]:
    """Write MASK's rows to `out` in `config`'s format (atomically); returns what was written, with the metadata."""
    fmt = config.format_for(out)
    target = check_export_path(ws, out, fmt)
    rows = open_mask(ws, mask_ref, data_ref)
    meta = metadata(rows, config)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        _WRITERS[fmt](tmp, blocks(rows, config, reporter), meta)
        if fmt == "jsonl":
            from ifguide_cli.core.store.workspace import atomic_write_text

            atomic_write_text(target.with_name(target.name + ".meta.json"), json.dumps(meta, indent=1) + "\n")
        if target.is_dir():
            target.rmdir()  # the empty folder an hf export may replace
        os.replace(tmp, target)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
    return {"mask": rows.art.id, "dataset": rows.dataset.id, "format": fmt, "out": str(target), "rows": rows.shape[0],
            "seq_len": rows.shape[1], "masked_tokens": int(np.count_nonzero(rows.mask)), "metadata": meta}
