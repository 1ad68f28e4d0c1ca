"""Paper steps 1–2: fit EK-FAC factors, then score every training token by differential influence.

The package, along the method's steps and seams:

- `config`      FactorsConfig / ScoresConfig (every setting, its help and range) and the precision rule
- `families`    which linear layers are tracked (built-in and user module families)
- `task`        the kronfluence Task: summed next-token CE, true-Fisher pseudo-labels, the weighted measurement
- `queries`     toxic (+1/N_tox) and safe (−1/N_safe) queries as ONE weighted query set
- `kron_compat` every reliance on kronfluence internals, and the check that it is the version they fit
- `engine`      a model prepared for kronfluence and its two passes (fit factors, pairwise scores)
- `inputs`      the model and its weight fingerprint, the training rows, a factors artifact's folder
- `staging`     partitions, resuming a killed run, half-written files
- `damping`     kronfluence's heuristic damping and the limit bf16 needs
- `factors`     stage 1, `fit_factors` → a `factors` artifact
- `scores`      stage 2, `compute_scores` → a `scores` artifact (label-aligned, see its docstring)
- `summary`     the statistics a scores artifact carries

Distributed: run the same command under ``torchrun``/``accelerate launch``; every rank computes its share
in the same staging folder, rank 0 writes and publishes.
"""

from __future__ import annotations

from ifguide_cli.core.influence.config import FactorsConfig, ScoresConfig, default_batch_size, influence_precision
from ifguide_cli.core.influence.engine import InfluenceEngine, align_to_labels
from ifguide_cli.core.influence.factors import fit_factors
from ifguide_cli.core.influence.families import (
    ModuleFamily,
    builtin_families,
    convert_conv1d_to_linear,
    custom_family,
    find_family,
    load_families,
    resolve_family,
    select_modules,
)
from ifguide_cli.core.influence.inputs import describe_model, factors_dir_of, load_model_for_influence, model_fingerprint
from ifguide_cli.core.influence.queries import (
    QueryRows,
    QuerySet,
    build_query_rows,
    continuation_tokens,
    join_query,
    load_query_set,
    query_rows,
    tokenize_queries,
)
from ifguide_cli.core.influence.scores import compute_scores, two_run_reference
from ifguide_cli.core.influence.staging import influence_device
from ifguide_cli.core.influence.task import FISHER_SEED, make_task, sample_labels

__all__ = [
    "FISHER_SEED",
    "FactorsConfig",
    "InfluenceEngine",
    "ModuleFamily",
    "QueryRows",
    "QuerySet",
    "ScoresConfig",
    "align_to_labels",
    "build_query_rows",
    "builtin_families",
    "compute_scores",
    "continuation_tokens",
    "convert_conv1d_to_linear",
    "custom_family",
    "default_batch_size",
    "describe_model",
    "factors_dir_of",
    "find_family",
    "fit_factors",
    "influence_device",
    "influence_precision",
    "join_query",
    "load_families",
    "load_model_for_influence",
    "load_query_set",
    "make_task",
    "model_fingerprint",
    "query_rows",
    "resolve_family",
    "sample_labels",
    "select_modules",
    "tokenize_queries",
    "two_run_reference",
]
