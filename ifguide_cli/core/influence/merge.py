"""Sharded scoring's second half: N shard artifacts (`scores --shard I/N`) → the one ordinary scores artifact.

A shard is a partial scores artifact (its `rows` config is {"shard": [I, N]}, its file holds its contiguous
rows and zeros elsewhere, like `--max-rows`). The merge checks that the parts are the N shards of ONE scoring
(same factors, dataset, queries, damping, precision, storage, …: everything in their config but the shard)
and copies each part's rows into a new file, a block of rows at a time. Its artifact has the config an
unsharded run of the same settings records, and the same parents, so it gets that run's id: the merged
artifact and an unsharded run are one and the same to every later stage (and to reuse).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.influence.blocks import BlockPlan, create_file
from ifguide_cli.core.influence.subset import ROWS_KEY, shard_bounds
from ifguide_cli.core.masking.arrays import CHUNK_ELEMENTS, row_chunks
from ifguide_cli.core.stage import ArtifactKey, Stage
from ifguide_cli.core.store.artifact_files import MODULE_SCORES_FILE, SCORES_FILE

if TYPE_CHECKING:
    from ifguide_cli.core.store.workspace import Artifact, BuildContext, Workspace


@dataclass(frozen=True)
class MergedScoresKey(ArtifactKey):
    """The merged artifact's identity: exactly the config of an unsharded run (so it gets the same id)."""

    kind: ClassVar[str] = "scores"
    recipe: tuple[tuple[str, Any], ...] = ()  # the parts' common config (JSON-encoded values), shard left out

    def config(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self.recipe}


@dataclass(frozen=True)
class MergeRefs:
    parts: tuple[str, ...]


@dataclass(frozen=True)
class MergeInputs:
    parts: tuple[Artifact, ...]  # in shard order
    recipe: dict[str, Any]
    parents: tuple[str, ...]
    dataset: Artifact | None = None  # the rows' dataset (for the summary's figures over predicted tokens)


def shard_of(art: Artifact) -> tuple[int, int] | None:
    """(I, N) of a shard artifact, None for any other scores artifact."""
    shard = (art.config.get("rows") or {}).get("shard")
    return (int(shard[0]), int(shard[1])) if shard else None


def recipe_of(art: Artifact) -> dict[str, Any]:
    """What a shard shares with the other shards of its scoring: its config without the shard."""
    return {k: v for k, v in art.config.items() if k != "rows"}


class ScoresMergeStage(Stage[MergeRefs, MergeInputs, None, dict[str, Any]]):
    """`ifguide scores --shard` parts → one scores artifact, equal to an unsharded run (up to row-wise rounding)."""

    kind = "scores"

    def inputs(self, ws: Workspace, refs: MergeRefs) -> MergeInputs:
        import dataclasses

        from ifguide_cli.core.errors import ArtifactNotFound

        inputs = check_parts([ws.resolve(ref, "scores") for ref in refs.parts])
        dataset = ws.by_id(inputs.recipe["dataset"])
        if dataset is None:
            raise ArtifactNotFound(f"dataset {inputs.recipe['dataset']} the shards scored is not in the workspace",
                                   hint="recreate it (the same `factors`/`scores` command names it)")
        return dataclasses.replace(inputs, dataset=dataset)

    def key(self, inputs: MergeInputs, config: None) -> MergedScoresKey:
        recipe = tuple((k, json.dumps(v, sort_keys=True)) for k, v in inputs.recipe.items())
        return MergedScoresKey(parents=inputs.parents, recipe=recipe)

    def describe(self, inputs: MergeInputs, config: None) -> str:
        return f"merge {len(inputs.parts)} score shards into one scores artifact"

    def build(self, ctx: BuildContext, inputs: MergeInputs, config: None) -> dict[str, Any]:
        from ifguide_cli.core.data import mapped_corpus
        from ifguide_cli.core.influence.summary import score_summary
        from ifguide_cli.core.masking.scorefile import load_safetensors_array

        first = inputs.parts[0]
        with ctx.timed("merge"):
            for name in (SCORES_FILE, MODULE_SCORES_FILE) if inputs.recipe.get("per_module") else (SCORES_FILE,):
                _merge_file(inputs.parts, name, ctx.staging / name, inputs.recipe.get("storage", "fp32"))
        scores = load_safetensors_array(ctx.staging / SCORES_FILE, "scores", widen_bf16=False)
        summary = {k: first.summary[k] for k in ("toxic_queries", "safe_queries", "dropped_empty_queries") if k in first.summary}
        seconds = sum(p.summary.get("seconds", 0.0) for p in inputs.parts)
        summary.update(score_summary(scores, mapped_corpus(inputs.dataset), 0.0, 1))
        summary.update({k: first.summary[k] for k in ("damping", "precision", "strategy", "storage") if k in first.summary})
        summary.update({"shards": [p.id for p in inputs.parts], "seconds": round(seconds, 3),
                        "tokens_per_s": round(scores.shape[0] * scores.shape[1] / seconds, 1) if seconds else None})
        return summary


def check_parts(parts: list[Artifact]) -> MergeInputs:
    """The parts must be all N shards of one scoring, each once; else one line naming what differs."""
    if not parts:
        raise IfguideError("no score shards to merge", exit_code=2)
    shards: list[tuple[int, int]] = []
    for art in parts:
        shard = shard_of(art)
        if shard is None:
            raise IfguideError(f"scores {art.id} is not a shard (made without --shard)",
                               hint="merge the artifacts `scores --shard I/N` made", exit_code=2)
        shards.append(shard)
    first, recipe = parts[0], recipe_of(parts[0])
    for art in parts[1:]:
        other = recipe_of(art)
        differ = sorted(k for k in recipe.keys() | other.keys() if recipe.get(k) != other.get(k))
        if differ:
            key = differ[0]
            raise IfguideError(f"score shards {first.id} and {art.id} come from different scorings: {key} "
                               f"{_short(recipe.get(key))} vs {_short(other.get(key))}",
                               hint="merge shards made with the same factors, queries, data and settings", exit_code=2)
    count = shards[0][1]
    indices = sorted(s[0] for s in shards)
    if any(s[1] != count for s in shards) or indices != list(range(count)):
        missing = sorted(set(range(count)) - set(indices))
        raise IfguideError(f"the shards given are {', '.join(f'{i}/{n}' for i, n in sorted(shards))}: "
                           + (f"shard(s) {', '.join(f'{i}/{count}' for i in missing)} missing" if missing
                              else "each of 0..N-1 of one N must be given once"),
                           hint=f"score the missing ones with `scores ... --shard I/{count}`", exit_code=2)
    ordered = tuple(sorted(parts, key=lambda p: _known_shard(p)[0]))
    return MergeInputs(ordered, recipe, tuple(first.parents))


def _known_shard(art: Artifact) -> tuple[int, int]:
    """(index, count) of a scores artifact already checked to be a shard."""
    shard = shard_of(art)
    assert shard is not None, f"scores {art.id} is a shard"
    return shard


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."


def _merge_file(parts: tuple[Artifact, ...], name: str, out, storage: str) -> None:
    """Every part's rows of every tensor of file `name` into `out`, copied a chunk of rows at a time."""
    from ifguide_cli.core.masking.scorefile import load_safetensors_array, open_tensor, safetensors_keys

    source = parts[0].file(name)
    keys = [k for k in safetensors_keys(source) if k != ROWS_KEY]
    n_rows, seq_len = load_safetensors_array(source, keys[0], widen_bf16=False).shape
    create_file(out, BlockPlan(None, n_rows, n_rows, 1), seq_len, storage, keys, None)
    for part in parts:
        index, count = _known_shard(part)
        lo, hi = shard_bounds(index, count, n_rows)
        for key in keys:
            src = load_safetensors_array(part.file(name), key, widen_bf16=False)
            dst = open_tensor(out, key)
            for r0, r1 in row_chunks(hi - lo, seq_len, CHUNK_ELEMENTS):
                dst[lo + r0:lo + r1] = src[lo + r0:lo + r1]
            dst.flush()
            del dst


def merge_if_complete(ws: Workspace, shard: Artifact):
    """When every shard of `shard`'s scoring is stored, merge them (reused if already merged); else None."""
    from ifguide_cli.core.stage import run_stage

    count = _known_shard(shard)[1]
    recipe = recipe_of(shard)
    found: dict[int, Artifact] = {}
    for art in ws.list("scores"):  # oldest first: a re-scored shard replaces an older one
        mine = shard_of(art)
        if mine is not None and mine[1] == count and recipe_of(art) == recipe:
            found[mine[0]] = art
    if len(found) < count:
        return None
    stage = ScoresMergeStage()
    return run_stage(ws, stage, stage.inputs(ws, MergeRefs(tuple(found[i].id for i in range(count)))), None)
