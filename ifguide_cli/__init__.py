"""ifguide: the IF-Guide pipeline (the `ifguide` command) and a small library for masks in your own training loop.

`import ifguide_cli as ifg` gives `ifg.load_mask`, `ifg.penalty_loss`, `ifg.token_weights` and `ifg.PenaltyTrainer`
(`ifguide_cli.api`), loaded on first use (PEP 562) so that `ifguide --help` never imports torch for them.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = ("LoadedMask", "PenaltyTrainer", "load_mask", "penalty_loss", "token_weights")
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        import importlib

        return getattr(importlib.import_module("ifguide_cli.api"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
