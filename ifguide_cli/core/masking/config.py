"""The parameters of Alg. 1, declared once: validation, help text and the `ifguide mask select` options."""

from __future__ import annotations

from dataclasses import dataclass

from ifguide_cli.core.config import Config, param


def token_budget():
    """The token budget L, declared once for every mask source (`mask select`, `mask classifier`, `mask wordlist`)."""
    return param(20_000_000, "Token budget: the walk stops before exceeding it.", short="-L", low=0)


@dataclass(frozen=True)
class MaskConfig(Config):
    """Parameters of Alg. 1: quantile p, context window w, token budget L."""

    threshold: float = param(0.99, "Quantile p of all token scores: tokens scoring strictly above it count.",
                             short="-p", low=0.0, high=1.0)
    window: int = param(1, "Context tokens marked on each side of a selected token.", short="-w", low=0)
    max_tokens: int = token_budget()
