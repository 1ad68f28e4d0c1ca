"""The mask-source contract: what a way of making a `masks` artifact declares, so that the `ifguide mask`
subcommands, a pipeline arm's `source:` choices, the arms' stages and the run's plan are all generated from
the registry (`extensions.MASK_SOURCES`) and nothing else names a source.

A source is registered as a `MaskSourceEntry`: its options (a `core.config.Config`, which also makes its CLI
options and checks an arm's `mask:` keys), what it reads (influence ``scores``, or the training ``data``), its
help and examples, and its stage (a `MaskSourceStage`, the stage contract of `core.stage`, named by a
``"module:Class"`` string and imported only when it runs). Every source ends in Alg. 1's budgeted walk
(`select.select_marked` or `select.select_toxic_tokens`) and writes the files and summary of an influence mask,
so `mask show/browse/export`, `train --mask` and a pipeline arm take any source's mask unchanged.

This module stays light (no numpy): the CLI reads the entries to build its commands and help.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ifguide_cli.core.config import Config
from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.extensions import MASK_SOURCES
from ifguide_cli.core.lazy_registry import import_target
from ifguide_cli.core.progress import NULL, Reporter
from ifguide_cli.core.stage import Result, Stage, run_stage, stored

if TYPE_CHECKING:
    from ifguide_cli.core.store.workspace import Artifact, Workspace

Reads = Literal["scores", "data"]
BUDGET_KEYS = ("max_tokens",)  # the mask section's keys every pipeline arm inherits: the same token budget


@dataclass(frozen=True)
class MaskRefs:
    """What a source that reads influence scores is given: a scores artifact or file, optionally its dataset
    and tensor key, and whether padding counts."""

    scores: str
    data: str | None = None
    scores_key: str | None = None
    all_positions: bool = False  # count padding too (default: only the attention mask's positions)


@dataclass(frozen=True)
class DataRefs:
    """What a source that reads the training data is given: DATA (a dataset artifact, or a source laid out with
    `model`'s tokenizer and the `corpus` options, as `ifguide factors MODEL --data DATA` lays it out)."""

    data: str
    model: str | None = None
    corpus: Mapping[str, Any] | None = None


class MaskSourceStage(Stage[Any, Any, Any, dict[str, Any]]):
    """A stage that makes a `masks` artifact. `reporter` shows its progress."""

    kind = "masks"

    def __init__(self, reporter: Reporter = NULL):
        self.reporter = reporter

    def prepare(self, ws: Workspace, config: Any) -> None:
        """Check what the config names (a classifier, a word list) before any data is read or laid out, so a
        bad one is one line at once; by default there is nothing to check."""


@dataclass(frozen=True)
class MaskSourceEntry:
    """One registered mask source (see the module docstring)."""

    name: str
    config: type[Config]  # its options
    stage: str  # "module:Class" of its MaskSourceStage
    reads: Reads  # scores: SCORES (+ --data for a plain score file); data: --data DATA (+ --model, corpus options)
    help: str  # the first line of its `ifguide mask` command's help
    examples: tuple[str, ...] = ()
    command: str | None = None  # its `ifguide mask` subcommand (None: none, e.g. a variant a pipeline arm picks)
    scores: bool | None = None  # the influence scores an arm feeds it: True toxic − safe, False toxic only, None none
    inherits: tuple[str, ...] | None = BUDGET_KEYS  # the mask section's keys an arm inherits (None: all of them)

    def load(self, reporter: Reporter = NULL) -> MaskSourceStage:
        """Its stage, imported now."""
        return import_target(self.stage)(reporter)

    def refs(self, *, data: str, scores: str | None) -> MaskRefs | DataRefs:
        """What a pipeline arm gives it: the run's scores artifact (and its dataset), or its dataset."""
        if self.reads == "scores":
            if scores is None:
                raise IfguideError(f"mask source {self.name} reads influence scores but was given none", exit_code=2)
            return MaskRefs(scores)
        return DataRefs(data)

    def inherited(self, section: Mapping[str, Any]) -> dict[str, Any]:
        """What an arm of this source takes from the pipeline's mask section: all of it, or the keys it inherits
        that its config declares (a classifier's `threshold` is a score, not Alg. 1's quantile)."""
        if self.inherits is None:
            return dict(section)
        declared = set(getattr(self.config, "__dataclass_fields__", {}))
        return {k: section[k] for k in self.inherits if k in section and k in declared}


def mask_source(name: str) -> MaskSourceEntry:
    """The registered source `name` (an unknown name is one line listing the registered ones)."""
    return MASK_SOURCES.get(name)


def make_mask(ws: Workspace, source: str, refs: MaskRefs | DataRefs, config: Any, *, name: str | None = None,
              force: bool = False, reporter: Reporter = NULL) -> Result[dict[str, Any]]:
    """Build (or reuse) the mask of `source` from `refs` with its `config`: the one way every source runs."""
    stage = mask_source(source).load(reporter)
    stage.prepare(ws, config)
    return run_stage(ws, stage, stage.inputs(ws, refs), config, name=name, force=force)


def stored_mask(ws: Workspace, source: str, refs: MaskRefs | DataRefs, config: Any) -> Artifact | None:
    """The stored mask `make_mask` would reuse, found by its stage's key (nothing is built); None when there is
    none, or when the key cannot be known now (a missing input: the run's input check says which)."""
    stage = mask_source(source).load()
    try:
        return stored(ws, stage.key(stage.inputs(ws, refs), config))
    except IfguideError:
        return None
