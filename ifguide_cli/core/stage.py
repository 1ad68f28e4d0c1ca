"""The stage contract: every command that makes an artifact is a `Stage` with the same four parts.

A stage is one step of the pipeline (dataset, tokenizer, train/finetune, factors, scores, a mask source, an
evaluation, a report, …). Each one declares

- ``Config``: its typed settings (a `core.config.Config` dataclass: validation, help, CLI options in one place);
- ``inputs(ws, refs) -> Inputs``: the artifacts and files it reads, resolved and checked before any work;
- ``key(inputs, config) -> ArtifactKey``: the identity of what it would make (kind, schema, settings, parents),
  computed without building anything — `run --dry-run` and the pipeline's reuse plan call only this;
- ``build(ctx, inputs, config) -> Summary``: the work, writing its files into ``ctx.staging`` and returning
  what the manifest's ``summary`` records.

`run_stage` is the one way to execute a stage: it finds a stored artifact with the same key (reuse), or builds
one under the workspace's lock, staging folder and atomic publish (`store.workspace.Workspace.create`).
`stored` answers "would this be reused?" with no side effect. The pattern is kronfluence's `Task` (an abstract
contract whose documented methods a user implements) applied to the pipeline's own steps.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

if TYPE_CHECKING:
    from ifguide_cli.core.store.workspace import Artifact, BuildContext, Workspace


@dataclass(frozen=True)
class ArtifactKey:
    """What identifies an artifact: its kind, the schema its manifest follows, its settings and its parents.

    Subclass it per artifact kind with typed fields (``kind`` and ``schema`` as class variables); the fields'
    values are the manifest's ``config`` and, with the parents, the artifact id (`Workspace.create` hashes them).
    Raise ``schema`` when a change makes older artifacts of the kind unusable: they then get new ids and are not
    reused, and `store.migrations` reads their manifests.
    """

    kind: ClassVar[str] = ""
    schema: ClassVar[int] = 1
    parents: tuple[str, ...] = ()

    def config(self) -> dict[str, Any]:
        """The settings part of the key, as the manifest's ``config`` records it (parents excluded, schema included)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "parents"}
        return {"schema": self.schema, **values}

    @property
    def id(self) -> str:
        """The artifact id this key gives (a hash of kind, settings and parents)."""
        from ifguide_cli.core.store.workspace import artifact_id

        return artifact_id(self.kind, self.config(), self.parents)


RefsT = TypeVar("RefsT")
InputsT = TypeVar("InputsT")
ConfigT = TypeVar("ConfigT")
SummaryT = TypeVar("SummaryT", bound=Mapping[str, Any])


@dataclass(frozen=True)
class Result(Generic[SummaryT]):
    """A finished or reused stage: the artifact, whether it was reused, and its summary as stored."""

    artifact: Artifact
    reused: bool

    @property
    def summary(self) -> dict[str, Any]:
        return self.artifact.summary


class Stage(ABC, Generic[RefsT, InputsT, ConfigT, SummaryT]):
    """One pipeline step (see the module docstring). Subclasses set ``kind`` and implement the three methods."""

    kind: ClassVar[str]

    @abstractmethod
    def inputs(self, ws: Workspace, refs: RefsT) -> InputsT:
        """Resolve what the user named (ids, names, paths: a typed ``Refs`` dataclass) to checked inputs.

        Everything missing or mismatched is a one-line `IfguideError` here, before any work starts."""

    @abstractmethod
    def key(self, inputs: InputsT, config: ConfigT) -> ArtifactKey:
        """The identity of the artifact this stage would make from these inputs and settings (nothing is built)."""

    @abstractmethod
    def build(self, ctx: BuildContext, inputs: InputsT, config: ConfigT) -> SummaryT:
        """Do the work: write files into ``ctx.staging``, time phases with ``ctx.timed``, return the summary."""

    def describe(self, inputs: InputsT, config: ConfigT) -> str:
        """What the stage does, in words, for `run --dry-run` (override for a more specific line)."""
        return f"build a {self.kind} artifact"


def stored(ws: Workspace, key: ArtifactKey) -> Artifact | None:
    """The stored artifact with this key, if any: what `run_stage` would reuse (no lock, no side effect)."""
    return ws.get(key.kind, key.id)


def run_stage(ws: Workspace, stage: Stage[Any, InputsT, ConfigT, SummaryT], inputs: InputsT, config: ConfigT, *,
              name: str | None = None, force: bool = False, device: str | None = None) -> Result[SummaryT]:
    """Reuse the stored artifact of the stage's key, or build it (locked, staged, published atomically)."""
    key = stage.key(inputs, config)

    def build(ctx: BuildContext) -> dict[str, Any]:
        return dict(stage.build(ctx, inputs, config))

    art, reused = ws.create(key.kind, key.config(), key.parents, build, name=name, force=force, device=device)
    return Result(art, reused)
