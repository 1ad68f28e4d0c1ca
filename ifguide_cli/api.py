"""ifguide as a library: an IF-Guide mask in a training loop of your own.

    import ifguide_cli as ifg

    mask = ifg.load_mask("tiny-mask")               # a mask artifact, its folder, or a `mask export` file/folder
    batch = mask.batch([0, 1, 2])                   # input_ids, attention_mask, labels, penalty: (B, T) tensors
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    loss = ifg.penalty_loss(logits, batch["labels"], batch["penalty"], lam=1.0)   # paper Eq. 9
    mask.spans(0)                                   # [(start, end), …]: masked characters of row 0's text

`penalty_loss` is the function `ifguide train` computes its loss with (`core.training.objective`), and
`PenaltyTrainer` the HF Trainer subclass it trains with; `token_weights` gives the per-position weights
(penalty −λ, or filter 0) for a loop that weighs the cross-entropy itself. Alignment: ``penalty[:, t]`` and the
weights belong to ``labels[:, t]`` before the shift — the loss of predicting token t from the logits at t−1.

Importing ``ifguide_cli`` stays light: these names load on first use (`ifguide --help` never imports them).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.training.objective import penalty_loss, token_weights

__all__ = ["LoadedMask", "load_mask", "penalty_loss", "token_weights"]  # and PenaltyTrainer, loaded when asked for

_ROW_COLUMNS = ("input_ids", "attention_mask", "labels", "penalty")
_TENSOR_COLUMNS = (*_ROW_COLUMNS, "loss_weight")  # the rest of an exported record is its source and spans


@dataclass
class LoadedMask:
    """A mask with its rows: (N, T) tensors aligned as `train` uses them, and each row's text and masked spans.

    ``input_ids``/``attention_mask``/``labels`` (−100 on padding) are long tensors, ``penalty`` a bool tensor;
    ``metadata`` says where the mask came from. `record(i)` gives row i's source (file, line), text and
    ``masked_spans`` (character spans of that text), read when asked for.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    penalty: torch.Tensor
    metadata: dict[str, Any] = field(default_factory=dict)
    _record: Callable[[int], dict[str, Any]] | None = None

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def batch(self, rows: Sequence[int]) -> dict[str, torch.Tensor]:
        """The tensors of these rows, stacked: what a training step needs."""
        index = torch.as_tensor(list(rows), dtype=torch.long)
        return {name: getattr(self, name)[index] for name in _ROW_COLUMNS}

    def record(self, row: int) -> dict[str, Any]:
        """Row `row`'s source (file, line, doc_id, char_start, char_end), text and masked_spans."""
        if not 0 <= row < len(self):
            raise IndexError(f"row {row} is outside the mask's {len(self)} rows")
        return self._record(row) if self._record is not None else {}

    def spans(self, row: int) -> list[tuple[int, int]]:
        """The [start, end) character spans of row `row`'s text that its masked tokens hold."""
        return [tuple(s) for s in self.record(row).get("masked_spans", [])]

    def torch_dataset(self, rows: Sequence[int] | None = None):
        """The rows as a torch Dataset of {input_ids, attention_mask, labels, loss_mask}: `PenaltyTrainer`'s input."""
        from ifguide_cli.core.data.rows import CorpusRows

        return CorpusRows(self.input_ids, self.attention_mask, rows, mask=self.penalty)


def load_mask(ref_or_path: str | Path, *, workspace: str | Path | None = None, data: str | None = None) -> LoadedMask:
    """A mask as tensors: a mask artifact (id, name, `latest`, in `workspace`, default `IFGUIDE_HOME`), a mask
    artifact's folder, or what `ifguide mask export --out` wrote (.parquet, .jsonl, or an hf folder).
    `data`: the dataset artifact of a mask made from a plain score file."""
    path = Path(ref_or_path).expanduser()
    if path.is_file() and path.suffix in (".parquet", ".jsonl"):
        return _from_export_table(path)
    if path.is_dir() and (path / "dataset_info.json").is_file():
        return _from_hf_folder(path)
    if path.is_dir() and (path / "manifest.json").is_file():  # WORKSPACE/masks/ID
        return _from_artifact(path.resolve().parent.parent, path.name, data)
    if path.exists():
        raise IfguideError(f"{path} is neither a mask artifact folder nor a `mask export` output",
                           hint="pass a mask id or name, its folder, or a .parquet/.jsonl/hf folder from `ifguide mask export`")
    return _from_artifact(workspace, str(ref_or_path), data)


def _from_artifact(workspace: str | Path | None, ref: str, data: str | None) -> LoadedMask:
    from ifguide_cli.core.masking.export import open_mask
    from ifguide_cli.core.store.workspace import Workspace

    rows = open_mask(Workspace(workspace), ref, data)
    ids = torch.from_numpy(np.asarray(rows.text.input_ids).astype(np.int64))
    att = torch.ones_like(ids) if rows.text.attention is None else torch.from_numpy(np.asarray(rows.text.attention).astype(np.int64))
    labels = ids.masked_fill(att.eq(0), -100)
    penalty = torch.from_numpy(np.asarray(rows.mask).astype(bool))
    meta = {"mask": rows.art.id, "dataset": rows.dataset.id, "tokenizer": rows.dataset.config.get("tokenizer")}

    def record(row: int) -> dict[str, Any]:
        from ifguide_cli.core.masking.export import row_fields

        return row_fields(rows, row)

    return LoadedMask(ids, att, labels, penalty, meta, record)


def _stack(values, dtype) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values), dtype=dtype)


def _from_columns(columns: dict[str, Any], meta: dict[str, Any], record: Callable[[int], dict[str, Any]]) -> LoadedMask:
    return LoadedMask(_stack(columns["input_ids"], torch.long), _stack(columns["attention_mask"], torch.long),
                      _stack(columns["labels"], torch.long), _stack(columns["penalty"], torch.bool), meta, record)


def _from_export_table(path: Path) -> LoadedMask:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(str(path))
        meta = json.loads((table.schema.metadata or {}).get(b"ifguide", b"{}"))
        columns = {name: table.column(name).to_pylist() for name in _ROW_COLUMNS}
        others = table.drop_columns(list(_TENSOR_COLUMNS))
        return _from_columns(columns, meta, lambda row: others.slice(row, 1).to_pylist()[0])
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    side = path.with_name(path.name + ".meta.json")
    meta = json.loads(side.read_text()) if side.is_file() else {}
    columns = {name: [r[name] for r in records] for name in _ROW_COLUMNS}
    return _from_columns(columns, meta, lambda row: {k: v for k, v in records[row].items() if k not in _TENSOR_COLUMNS})


def _from_hf_folder(path: Path) -> LoadedMask:
    import datasets

    ds = datasets.load_from_disk(str(path))
    meta = json.loads(ds.info.description or "{}")
    columns = {name: ds.data.column(name).to_pylist() for name in _ROW_COLUMNS}
    rest = ds.remove_columns(list(_TENSOR_COLUMNS))
    return _from_columns(columns, meta, lambda row: rest[row])


def __getattr__(name: str) -> Any:
    if name == "PenaltyTrainer":  # imports transformers: only when asked for
        from ifguide_cli.core.training.trainer import PenaltyTrainer

        return PenaltyTrainer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
