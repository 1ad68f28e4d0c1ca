"""The corpus as a torch Dataset of rows: one class for training (with the loss mask) and influence (with the row index)."""

from __future__ import annotations

from collections.abc import Sequence

from ifguide_cli.core.store.artifact_files import IGNORE_INDEX


class CorpusRows:
    """Rows of the (N, T) corpus as {input_ids, attention_mask, labels} (labels are -100 on padding).

    Labels are built per row, so a large corpus is never copied. `rows` picks and orders a subset
    (e.g. the training split); `mask` adds the row's `loss_mask` (the IF-Guide penalty); `with_index`
    adds the row's index, which seeds the pseudo-labels of the true-Fisher pass in influence.
    """

    def __init__(self, input_ids, attention_mask, rows: Sequence[int] | None = None, mask=None, with_index: bool = False):
        self.input_ids = input_ids
        self.attention_mask = attention_mask
        self.rows = None if rows is None else list(rows)
        self.mask = mask
        self.with_index = with_index

    def __len__(self) -> int:
        return int(self.input_ids.shape[0]) if self.rows is None else len(self.rows)

    def __getitem__(self, i: int) -> dict:
        r = i if self.rows is None else self.rows[i]
        ids, att = self.input_ids[r].long(), self.attention_mask[r].long()  # a memory-mapped corpus is int32 / uint8
        item = {"input_ids": ids, "attention_mask": att, "labels": ids.masked_fill(att.eq(0), IGNORE_INDEX)}
        if self.mask is not None:
            item["loss_mask"] = self.mask[r]
        if self.with_index:
            item["index"] = r
        return item


def rows_without_masked(rows: Sequence[int], mask, doc_ids=None) -> tuple[list[int], list[int]]:
    """(kept, dropped) of `rows`: `--suppression drop` (document filtering) leaves out every row with a masked token.

    With `doc_ids` (each row's document id, the dataset's source map of a one-document-per-row layout) a whole
    document goes: every row of a document that has a masked token in ANY of its rows (a long document split
    over rows). Without it (packed rows hold parts of several documents, which cannot be cut out of a packed
    tensor) the unit is the row. The order of the kept rows is kept.
    """
    flagged = mask.any(dim=1).tolist()
    if doc_ids is None:
        drop = flagged
    else:
        docs = [int(d) for d in doc_ids]
        bad_docs = {d for d, f in zip(docs, flagged, strict=True) if f}
        drop = [d in bad_docs for d in docs]
    return [r for r in rows if not drop[r]], [r for r in rows if drop[r]]
