"""Whether a dataset (corpus, query set, prompt set, evaluation text) can be read here, looked up as the stages
will look for it but without loading it: a workspace artifact, a packaged file, a local path, a reference subset's
local copy (`$IFGUIDE_DATA_DIR`) or the Hugging Face cache; with the hub reachable, what is not cached is downloaded
on first use. Shared by the pipeline's input check and the eval commands' own checks.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ifguide_cli.core.errors import IfguideError

if TYPE_CHECKING:
    from ifguide_cli.core.store.workspace import Workspace


@dataclass(frozen=True)
class Input:
    """One thing the pipeline reads: the key naming it, what it is, and where it was found (or why not)."""

    role: str  # model, data, baseline.checkpoint, influence.toxic_queries, eval.prompts, …
    ref: str
    what: str  # architecture, weights, tokenizer, dataset, query set, prompt set, classifier
    available: bool
    where: str  # where it is found, or why it cannot be
    hint: str = ""  # how to supply it when it is missing

    def to_json(self) -> dict:
        return asdict(self)


def dataset_input(ws: Workspace, role: str, ref: str, what: str, *, artifact: bool = False, split: str | None = None) -> Input:
    """A dataset (corpus, query set, prompt set, evaluation text), found as the stages will look for it."""
    from ifguide_cli.core.data import dataset_identity, is_source_ref
    from ifguide_cli.core.paper.subsets import SUBSETS

    if artifact and not is_source_ref(ref):
        found = workspace_dataset(ws, ref)
        if found is not None:
            return Input(role, ref, what, True, f"dataset {found.id} in the workspace")
    try:
        identity = dataset_identity(ref, split)  # what every stage calls first: an unknown name fails here
    except IfguideError as exc:
        return Input(role, ref, what, False, exc.message, exc.hint or "")
    if ref in SUBSETS:
        return subset_input(role, ref, what)
    if identity["source"] == "local":
        return Input(role, ref, what, True, f"local {'folder' if Path(ref).expanduser().is_dir() else 'file'}")
    if identity["source"] == "registry":
        from ifguide_cli.core.registry import DATASETS

        hub_id = DATASETS[ref].hub_id
        if hub_id is None:
            return Input(role, ref, what, True, "packaged")
        return hub_input(role, ref, what, hub_id, None, "a local .jsonl/.parquet file or save_to_disk folder")
    return hub_input(role, ref, what, identity["hub_id"], None, "a local .jsonl/.parquet file or save_to_disk folder")


def workspace_dataset(ws: Workspace, ref: str):
    from ifguide_cli.core.errors import ArtifactNotFound

    try:
        return ws.resolve(ref, "datasets")
    except ArtifactNotFound:
        return None


def subset_input(role: str, ref: str, what: str) -> Input:
    """A reference subset: its dataset's local copy ($IFGUIDE_DATA_DIR/<hub id>) or the hub."""
    from ifguide_cli.core.paper import subsets

    subset = subsets.get(ref)
    local = subsets.locate(subset)
    if local is not None:
        return Input(role, ref, what, True, f"local copy {local}")
    return hub_input(role, ref, what, subset.hub_id, None, subsets.local_hint(subset.hub_id))


# ---- the Hugging Face cache ----------------------------------------------------------------------------
def hub_input(role: str, ref: str, what: str, hub_id: str, files: tuple[str, ...] | None, local: str) -> Input:
    """A hub model/tokenizer (`files`: any one of them cached is enough) or dataset (`files` None)."""
    from ifguide_cli.core.hub import is_offline

    cached = hub_dataset_cached(hub_id) if files is None else any(hub_file_cached(hub_id, f) for f in files)
    if cached:
        return Input(role, ref, what, True, f"Hugging Face cache ({hub_id})")
    if not is_offline():
        return Input(role, ref, what, True, f"hub {hub_id} (downloaded on first use)")
    repo = " --repo-type dataset" if files is None else ""
    return Input(role, ref, what, False, f"{hub_id} is not in the Hugging Face cache and the hub is offline",
                 f"`hf download {hub_id}{repo}` where there is network and copy the cache into $HF_HOME, or use {local}")


def hub_file_cached(hub_id: str, filename: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(hub_id, filename), str)
    except Exception:  # an id the cache cannot hold (bad characters): not cached
        return False


def hub_dataset_cached(hub_id: str) -> bool:
    """A hub dataset in the hub cache (snapshots) or in the `datasets` cache (prepared arrow files)."""
    from huggingface_hub import constants

    hub = Path(constants.HF_HUB_CACHE) / ("datasets--" + hub_id.replace("/", "--")) / "snapshots"
    prepared = Path(os.environ.get("HF_DATASETS_CACHE") or Path(constants.HF_HOME) / "datasets")
    return hub.is_dir() or (prepared / hub_id.replace("/", "___")).is_dir()
