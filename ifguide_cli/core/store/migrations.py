"""Schema versions of every artifact kind, and the migrations that read an older manifest as the current one.

A manifest's ``config`` carries ``schema``, the version of its kind's format (`stage.ArtifactKey` adds it); a
manifest without one is version 0. Every manifest is read through `migrate` (`store.manifests.read_manifest`),
which applies one function per version step of its kind, so the code that reads artifacts sees only the current
form: what older artifacts recorded differently is translated here, not at each place that reads them.

A migration changes what is read, never the file on disk nor the artifact's id (the hash of the config it was
written with): an older artifact stays readable (reports, lineage, `workspace show`), and a stage whose key
changed builds a new one rather than reusing it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

Manifest = dict[str, Any]
Step = Callable[[dict[str, Any], dict[str, Any]], None]  # (config, summary) of a copy, edited in place

# the model dtype as eval configs recorded it before `--precision` (torch's names) -> the precision it was
_EVAL_DTYPES = {"float32": "fp32", "torch.bfloat16": "bf16", "torch.float16": "fp16"}


def _stamp(config: dict[str, Any], summary: dict[str, Any]) -> None:
    """A version step with nothing to translate: the kind's key only gained its `schema`."""


def _evals_v1(config: dict[str, Any], summary: dict[str, Any]) -> None:
    """Evals before the stage contract: the dtype under torch's name; a toxicity eval's `leakage_queries` only when
    `--queries` was given; a fluency eval's `lambada_metrics` only when not whole-word alone (the one metric
    before there were two), and a summary from then with only `lambada_accuracy`, which was whole-word accuracy."""
    if "dtype" in config:
        config["dtype"] = _EVAL_DTYPES.get(config["dtype"], config["dtype"])
    task = config.get("task")
    if task == "toxicity":
        config.setdefault("leakage_queries", None)
    if task == "fluency":
        config.setdefault("lambada_metrics", ["whole-word"] if config.get("lambada_data") is not None else [])
        if summary.get("lambada_accuracy") is not None and "lambada_metric" not in summary:
            summary["lambada_word_accuracy"] = summary["lambada_accuracy"]


def _reports_v1(config: dict[str, Any], summary: dict[str, Any]) -> None:
    """Reports before the stage contract recorded the control and the statistics' settings only when they were
    given (`--control`, non-default `--bootstrap`/`--seed`)."""
    config.setdefault("control", None)
    config.setdefault("statistics", None)


def _datasets_v1(config: dict[str, Any], summary: dict[str, Any]) -> None:
    """Datasets made before `--label-field` were the tiny corpus's, labelled by its `planted_toxic` field."""
    config.setdefault("label_field", "planted_toxic")


def _classifiers_v1(config: dict[str, Any], summary: dict[str, Any]) -> None:
    """RAD reward models installed before the stage contract recorded their shapes as `config`."""
    if config.get("backend") == "rad-reward" and "config" in config:
        config["architecture"] = config.pop("config")


# STEPS[kind][v] reads version v of the kind as version v + 1; a kind's current version is its number of steps,
# which must equal its ArtifactKey's `schema` (tests/store/test_migrations.py checks).
STEPS: dict[str, tuple[Step, ...]] = {
    "datasets": (_datasets_v1,),
    "tokenizers": (_stamp,),
    "factors": (_stamp,),
    "scores": (_stamp,),
    "masks": (_stamp,),
    "checkpoints": (_stamp,),
    "evals": (_evals_v1,),
    "classifiers": (_classifiers_v1,),
    "reports": (_reports_v1,),
}
CURRENT: dict[str, int] = {kind: len(steps) for kind, steps in STEPS.items()}


def schema_version(manifest: Manifest) -> int:
    """The schema a manifest was written with (0: before manifests recorded one)."""
    version = (manifest.get("config") or {}).get("schema", 0)
    return version if isinstance(version, int) and not isinstance(version, bool) else 0


def migrate(manifest: Manifest) -> Manifest:
    """The manifest as its kind's current schema records it: a translated copy when it is older, else itself."""
    steps = STEPS.get(manifest.get("kind", ""), ())
    version = schema_version(manifest)
    if version >= len(steps):
        return manifest
    config, summary = copy.deepcopy(manifest.get("config", {})), copy.deepcopy(manifest.get("summary", {}))
    out = {**manifest, "config": config, "summary": summary}  # a step edits only these (the file list stays shared)
    for step in steps[version:]:
        step(config, summary)
    config["schema"] = len(steps)
    return out
