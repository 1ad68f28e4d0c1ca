"""The options of `ifguide mask export --out`, declared once (the CLI options and their checks come from here)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ifguide_cli.core.config import Config, param

ExportFormat = Literal["parquet", "jsonl", "hf"]


@dataclass(frozen=True)
class MaskExportConfig(Config):
    """What an exported mask holds besides its rows: the file format and the loss weight of a masked token."""

    format: ExportFormat | None = param(
        None, "parquet: one file; jsonl: one JSON record a line (+ PATH.meta.json); hf: a `datasets` folder "
              "(save_to_disk, load with datasets.load_from_disk).", shown_default="by --out: .parquet, .jsonl, else hf")
    lam: float = param(1.0, "λ of the `loss_weight` column: a masked token's weight is −λ (--suppression penalty).",
                       flag="--lambda", low=0)
    suppression: Literal["penalty", "filter"] = param(
        "penalty", "`loss_weight` of a masked token: −λ (penalty, IF-Guide) or 0 (filter, token filtering).")

    def format_for(self, out: str) -> str:
        """The format asked for, else the one --out's name says."""
        if self.format is not None:
            return self.format
        suffix = out.lower().rsplit(".", 1)[-1] if "." in out.rsplit("/", 1)[-1] else ""
        return suffix if suffix in ("parquet", "jsonl") else "hf"
