"""The options of `ifguide mask transfer`, declared once (the CLI options and their checks come from here)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ifguide_cli.core.config import Config, param


@dataclass(frozen=True)
class MaskTransferConfig(Config):
    """How masked characters become masked tokens of the new tokenizer, and the new rows' length."""

    rule: Literal["majority", "any"] = param(
        "majority", "A new token is masked when at least half of its characters are masked (majority) or when any "
                    "is (any: keeps every masked character, adds more).")
    seq_len: int | None = param(None, "Tokens per row of the new dataset (default: the original's; a tokenizer "
                                      "that needs more tokens per document may then cut documents).", low=2,
                                shown_default="the mask's dataset's")
