"""The parameters of Alg. 1, declared once: validation, help text and the `ifguide mask select` options; and the
influence sources' registry entries (`extensions.MASK_SOURCES`)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ifguide_cli.core.config import Config, param
from ifguide_cli.core.masking.source import MaskSourceEntry


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


INFLUENCE_SOURCE = MaskSourceEntry(
    "influence", MaskConfig, "ifguide_cli.core.masking.stage:InfluenceMaskStage", "scores", command="select",
    help="Build a mask artifact from a scores artifact or a score file (kronfluence pairwise_scores.safetensors, "
         ".safetensors or .npy).",
    examples=("ifguide mask tiny-scores --name tiny-mask", "ifguide mask select latest:scores --top 20",
              "ifguide mask pairwise_scores.safetensors --data 1f21b739dcbd"),
    scores=True, inherits=None)
# the paper's ablation: Alg. 1 on the toxic queries' scores alone (a pipeline arm; on the CLI it is `mask select`
# given such scores)
STANDARD_INFLUENCE_SOURCE = replace(INFLUENCE_SOURCE, name="standard-influence", command=None, scores=False)
