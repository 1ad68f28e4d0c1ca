"""The settings of the two influence stages, each declared once with its help, range and CLI flag.

Fields after `batch_size` are execution settings: they decide how the work is split (batch sizes,
partitions, device), not what is computed, so they are not part of an artifact's identity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from ifguide_cli.core.config import Config, Device, Precision, param, resolve_precision
from ifguide_cli.core.errors import IfguideError

Strategy = Literal["ekfac", "kfac", "diagonal", "identity"]
Storage = Literal["fp32", "bf16", "fp16"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)
PRECISIONS = ("fp32", "bf16")  # the concrete precisions of factors and scores (fp16 underflows the curvature)
DEFAULT_MAX_EXAMPLES = 100_000  # kronfluence's own default for covariance/Lambda fitting
TOKENS_PER_BATCH = 16_384  # default batch = this many tokens per device (rows × seq_len)
BF16_MIN_RELATIVE_DAMPING = 1e-3  # damping / (mean eigenvalue) below this draws a warning in bf16
ALL_ROWS = "all"  # `--max-examples all`: fit on every row (the reference's setting)
DAMPING_AUTO = ("auto", "none", "heuristic")  # spellings of kronfluence's heuristic damping

_PRECISION_HELP = "auto (= fp32, the most faithful) | fp32 | bf16 (bf16 forward/backward, fp32 accumulation)."
_BATCH_HELP = "Rows per device and batch (default: 16384 tokens' worth)."
_PARTITIONS_HELP = "Data partitions: finished ones survive a crash and are not recomputed."


def influence_precision(requested: str, device) -> str:
    """The concrete precision of a factors/scores run.

    `auto` is fp32 on every device (unlike training, where it means bf16 on a GPU): fp32 factors and
    scores are the most faithful, and bf16 is a choice the user makes knowing its cost (≈0.98–0.999
    Spearman with fp32). bf16 runs on a CPU too (the agreement tests do); fp16 is refused.
    """
    if requested == "auto":
        return "fp32"
    return resolve_precision(requested, str(device), allowed=PRECISIONS, half_on_cpu=True)


def _refuse_unsupported_precision(requested: str) -> None:
    if requested != "auto" and requested not in PRECISIONS:
        influence_precision(requested, "cpu")  # raises the one-line "not supported here" error


def default_batch_size(seq_len: int) -> int:
    return max(1, TOKENS_PER_BATCH // max(1, seq_len))


def parse_damping(value) -> float | None:
    """`auto` (kronfluence's heuristic) → None, a number → float; anything else is one error line."""
    if value is None or not isinstance(value, str):
        return value
    if value.strip().lower() in DAMPING_AUTO:
        return None
    try:
        return float(value)
    except ValueError:
        raise IfguideError(f"--damping must be `auto` or a number > 0, got {value!r}", exit_code=2) from None


def parse_max_examples(value):
    """`all` (every row) → None, a whole number (also as text) → int; anything else is left to the field's check."""
    if isinstance(value, str):
        if value.strip().lower() == ALL_ROWS:
            return None
        try:
            return int(value)
        except ValueError:
            raise IfguideError(f"--max-examples must be a whole number ≥ 1 or `{ALL_ROWS}`, got {value!r}",
                               exit_code=2) from None
    return value


@dataclass(frozen=True)
class FactorsConfig(Config):
    """`ifguide factors`: which curvature approximation to fit, on how many rows, in which precision."""

    strategy: Strategy = param("ekfac", "Curvature approximation: ekfac | kfac | diagonal | identity.")
    precision: Precision = param("auto", _PRECISION_HELP)
    max_examples: int | None = param(
        DEFAULT_MAX_EXAMPLES, f"Fit on at most this many rows (the first ones); `{ALL_ROWS}` = every row (the paper's).",
        low=1)
    modules: tuple[str, ...] | None = param(
        None, "Globs of module names to track; override the model family's.", flag="--modules")
    families_file: str | None = param(None, "YAML/JSON file of extra model families (see below).", flag="--families")
    seq_len: int | None = param(None, "Tokens per row when tokenizing DATA (default: the checkpoint's dataset when DATA is "
                                      "its source; 64 for tiny; else fitted to the documents).", low=2)
    allow_random: bool = param(False, "Fit factors of a registry model that has no trained weights (its seeded random "
                                      "initialisation); refused otherwise.")
    # execution only (not part of the artifact id):
    batch_size: int | None = param(None, _BATCH_HELP, low=1)
    partitions: int = param(1, _PARTITIONS_HELP, low=1)
    device: Device = param("auto", "auto | cpu | cuda.")

    def __post_init__(self) -> None:
        object.__setattr__(self, "max_examples", parse_max_examples(self.max_examples))  # `all` in a YAML file too
        super().__post_init__()

    def check(self) -> None:
        _refuse_unsupported_precision(self.precision)
        if self.modules is not None and not all(isinstance(g, str) and g for g in self.modules):
            raise IfguideError(f"--modules takes non-empty glob strings; got {self.modules!r}", exit_code=2)


@dataclass(frozen=True)
class ScoresConfig(Config):
    """`ifguide scores`: damping, precision and query sampling of the differential influence pass."""

    damping: float | None = param(
        None, "auto (kronfluence's heuristic, 0.1 × mean eigenvalue per module) or a number > 0.", low=0.0, low_open=True)
    precision: Precision = param(
        "auto", "auto (= fp32, the most faithful) | fp32 | bf16 (bf16 forward/backward and per-token products, fp32 "
                "preconditioning).")
    per_module: bool = param(False, "Also save per-module scores (module_scores.safetensors).")
    max_queries: int | None = param(None, "Use a seeded random subset of at most this many queries per set.", low=1)
    query_seed: int = param(0, "Seed of the query subsampling.")
    query_low_rank: int | None = param(None, "Low-rank query gradient (only without --safe-queries).", low=1)
    max_rows: int | None = param(None, "Score only the first N rows of the data (the others score 0 and are never "
                                       "selected by `mask`).", low=1)
    rows_file: str | None = param(None, "Score only these rows: a file of row indices (one per line, or a .npy array).",
                                  flag="--rows")
    shard: str | None = param(None, "Score only shard I of N (I/N, 0-based: the I-th of N contiguous blocks of rows) as a "
                                    "partial artifact; when all N are stored they are merged into the full one.")
    storage: Storage = param("fp32", "Dtype the scores are stored in: fp32 (default: exact, 4 bytes/token) | bf16 | fp16 "
                                     "(2 bytes/token; the mask may differ near the threshold, see docs/scale.md).")
    # execution only:
    batch_size: int | None = param(None, "Training rows per device and batch (default: 16384 tokens' worth).", low=1)
    query_batch_size: int = param(16, "Queries per device and batch.", low=1)
    partitions: int | None = param(None, "Blocks the rows are scored in, each written to the artifact when done (a killed "
                                         "run continues from the last finished one); default: one per 4M tokens.", low=1)
    device: Device = param("auto", "auto | cpu | cuda.")

    def __post_init__(self) -> None:
        object.__setattr__(self, "damping", parse_damping(self.damping))  # `damping: auto` in a YAML file
        super().__post_init__()

    def check(self) -> None:
        _refuse_unsupported_precision(self.precision)
        if sum(x is not None for x in (self.max_rows, self.rows_file, self.shard)) > 1:
            raise IfguideError("give one of --max-rows, --rows and --shard", exit_code=2)
        if self.shard is not None:
            from ifguide_cli.core.influence.subset import parse_shard

            parse_shard(self.shard)

    def check_differential(self, differential: bool) -> None:
        """Rules that depend on whether safe queries are subtracted (they are an argument, not a setting)."""
        if differential and self.query_low_rank is not None:
            raise IfguideError(
                "--query-low-rank cannot be combined with --safe-queries: a low-rank query gradient is not linear in the "
                "query weights, so the one-pass differential would no longer equal toxic minus safe",
                hint="drop --query-low-rank (the aggregated query gradient is one matrix per layer anyway)", exit_code=2)
