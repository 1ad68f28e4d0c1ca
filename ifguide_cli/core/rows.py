"""The corpus as a torch Dataset of rows: one class for training (with the loss mask) and influence (with the row index)."""

from __future__ import annotations

from collections.abc import Sequence

from .artifact_files import IGNORE_INDEX


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
        ids, att = self.input_ids[r], self.attention_mask[r]
        item = {"input_ids": ids, "attention_mask": att, "labels": ids.masked_fill(att.eq(0), IGNORE_INDEX)}
        if self.mask is not None:
            item["loss_mask"] = self.mask[r]
        if self.with_index:
            item["index"] = r
        return item
