"""The reference's fixed subsets: which hub rows the paper used, in the order it used them.

The row indices ship with the package (`assets/reference/indices.npz`, the authors' MIT-licensed index
files); the rows themselves come from the Hugging Face Hub. A subset is loaded from, in this order:
1. `source` (the `--source PATH` of a command): a folder from `hf download ID --repo-type dataset
   --local-dir PATH`, a `save_to_disk` folder, or one .jsonl/.json/.parquet/.csv/.arrow file;
2. `$IFGUIDE_DATA_DIR/<hub id>` when that folder exists (one download serves every subset of a dataset);
3. the hub id through `datasets.load_dataset`, which uses the local HF cache and honours `HF_HUB_OFFLINE`.
A source that cannot be the indexed dataset (missing columns, a row count that does not match) is refused
in one line: selecting the reference's indices from another ordering would silently pick other rows.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.paper import indexfile

DATA_DIR_ENV = "IFGUIDE_DATA_DIR"
OWT_CHUNKS = "ztcoalson/openwebtext-gptneox-2048-chunks"
RTP = "allenai/real-toxicity-prompts"
LAMBADA = "EleutherAI/lambada_openai"
LOCAL_FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv", ".arrow": "arrow"}


@dataclass(frozen=True)
class Subset:
    """A named selection of rows of one hub dataset split (or, with `parts`, the concatenation of subsets)."""

    name: str
    hub_id: str
    config: str | None
    split: str
    rows: int  # rows selected (repeats counted)
    role: str  # train | heldout | queries | prompts | lambada (the roles of core/registry.py)
    description: str
    columns: tuple[str, ...] = ()  # columns the source must have
    source_rows: int | None = None  # exact row count of the indexed split, where known
    label: bool | None = None  # toxic (True) / non-toxic (False) for the RTP subsets
    sha256: str | None = None  # indexfile.fingerprint of the authors' index file
    parts: tuple[str, ...] = ()  # a composite: these subsets, in this order

    @property
    def reference_file(self) -> str | None:
        return indexfile.REFERENCE_FILES.get(self.name)


def _owt(name: str, rows: int, role: str, sha: str, text: str) -> Subset:
    return Subset(name, OWT_CHUNKS, None, "train", rows, role, text, columns=("input_ids",), sha256=sha)


def _rtp(name: str, rows: int, role: str, label: bool, sha: str, text: str) -> Subset:
    return Subset(name, RTP, None, "train", rows, role, text, columns=("prompt", "continuation"), source_rows=99_442,
                  label=label, sha256=sha)


SUBSETS: dict[str, Subset] = {s.name: s for s in [
    _owt("owt-train-1b", 488_282, "train", "6ac0141e0036b7df5f0265ea8dcf39cf2040bfbd82753c0075095178b73e116e",
         "the paper's 1B-token OpenWebText training subset: 2048-token Pythia-tokenized chunks, "
         "unsorted, 4 chunks twice"),
    _owt("owt-valid", 24_415, "heldout", "428d3ba1890a13e97d3c8066ce2572f35d65a884ce9c604768f1ed396ca389e3",
         "OpenWebText validation chunks (best-checkpoint selection by eval loss); disjoint from train"),
    _owt("owt-test", 4_883, "heldout", "d5f02f19e6806763ef8b71c84ded7fa23f179e21ffc845c414d88039717a6ca9",
         "OpenWebText test chunks: the paper's perplexity set; disjoint from train and valid"),
    _rtp("rtp-queries-toxic", 19_785, "queries", True, "abc99fce32e5fec1a89d33c6ff91ae73312eb707e6b3f66daea769b29fba2a11",
         "toxic influence queries (RTP prompt + continuation, toxic by Detoxify)"),
    _rtp("rtp-queries-nontoxic", 64_327, "queries", False, "960d44affafdcf50bf822a9b421e112c23485f5d49c19643240fc7b4e2884845",
         "non-toxic influence queries (RTP prompt + continuation)"),
    _rtp("rtp-test-toxic", 5_000, "prompts", True, "7ae651374a3724957a9f5b8ff76b44b61c0841a7aec7ccc808e5eae05c0422ee",
         "toxic evaluation prompts (RTP, toxic by Detoxify)"),
    _rtp("rtp-test-nontoxic", 5_000, "prompts", False, "2c3b12b6afb649babd068fc888a8cf227455dc7cabd579b624e5b7b355afc2ac",
         "non-toxic evaluation prompts (RTP)"),
    Subset("rtp-test", RTP, None, "train", 10_000, "prompts",
           "the paper's RTP evaluation set: rtp-test-toxic then rtp-test-nontoxic, labelled by subset",
           columns=("prompt",), source_rows=99_442, parts=("rtp-test-toxic", "rtp-test-nontoxic")),
    Subset("lambada-reference", LAMBADA, "en", "test", 4_860, "lambada",
           "the paper's LAMBADA subset (4,860 of 5,153 passages), scored by last-token accuracy",
           columns=("text",), source_rows=5_153,
           sha256="3588cd7c3706c7908e1095a57f530980495249ce515ea9e518533ad857941fcf"),
]}


def get(name: str) -> Subset:
    if name not in SUBSETS:
        raise IfguideError(f"unknown reference subset {name!r}", hint=f"use one of {', '.join(SUBSETS)}", exit_code=2)
    return SUBSETS[name]


def bundle_path() -> Path:
    return Path(str(resources.files("ifguide_cli") / "assets" / "reference" / "indices.npz"))


@functools.cache
def indices(name: str):
    """The subset's hub row indices (int64, read-only) in the reference's order, repeats kept."""
    import numpy as np

    subset = get(name)
    if subset.parts:
        values = np.concatenate([indices(part) for part in subset.parts])
    else:
        values = indexfile.read(bundle_path(), name)
    values.flags.writeable = False
    return values


def labels(name: str) -> list[bool | None]:
    """Per selected row: the toxic / non-toxic label its subset gives it (None where there is none)."""
    subset = get(name)
    if subset.parts:
        return [label for part in subset.parts for label in labels(part)]
    return [subset.label] * subset.rows


def subset_table() -> list[dict]:
    """One JSON-ready row per subset (for `ifguide registry datasets --json`)."""
    keys = ("name", "hub_id", "config", "split", "rows", "role", "label", "source_rows", "description")
    rows = []
    for subset in SUBSETS.values():
        fields = asdict(subset)
        rows.append({**{k: fields[k] for k in keys}, "reference_file": subset.reference_file, "parts": list(subset.parts)})
    return rows


def identity(name: str) -> dict:
    """Where a subset comes from, cheaply (nothing is read): the reuse key of the stages that use it."""
    subset = get(name)
    parts = subset.parts or (name,)
    return {"source": "reference-subset", "name": name, "hub_id": subset.hub_id, "config": subset.config,
            "split": subset.split, "rows": subset.rows, "sha256": [get(p).sha256 for p in parts]}


# ---- the source dataset ----------------------------------------------------------------------
def local_hint(hub_id: str) -> str:
    """How to supply a dataset the subsets index without the hub: a local copy under $IFGUIDE_DATA_DIR."""
    return (f"a local copy at $IFGUIDE_DATA_DIR/{hub_id} (a `hf download … --local-dir` or save_to_disk folder, or one "
            f"{'/'.join(LOCAL_FILE_BUILDERS)} file named so)")


def locate(subset: Subset, source: str | os.PathLike | None = None) -> Path | None:
    """The local copy to read (`source`, else `$IFGUIDE_DATA_DIR/<hub id>` as a folder or one data file), or
    None for the hub id."""
    if source is not None:
        path = Path(source).expanduser()
        if not path.exists():
            raise IfguideError(f"source {str(source)!r} for {subset.name} does not exist",
                               hint=f"pass a local copy of {subset.hub_id} (`hf download {subset.hub_id} "
                                    "--repo-type dataset --local-dir PATH`)", exit_code=2)
        return path
    root = os.environ.get(DATA_DIR_ENV)
    if not root:
        return None
    base = Path(root).expanduser() / subset.hub_id
    candidates = [base, *(base.with_name(base.name + suffix) for suffix in LOCAL_FILE_BUILDERS)]
    return next((path for path in candidates if path.exists()), None)


def open_source(subset: Subset, source: str | os.PathLike | None = None):
    """The whole indexed split (a `datasets.Dataset`), checked to be the dataset the indices refer to."""
    from ifguide_cli.core.hub import hub_resource

    path = locate(subset, source)
    if path is None:
        import datasets

        with hub_resource("dataset", subset.hub_id, local_hint(subset.hub_id)):
            ds = datasets.load_dataset(subset.hub_id, subset.config, split=subset.split)
        where = subset.hub_id
    else:
        ds, where = _load_local(path, subset), str(path)
    _check_source(ds, subset, where)
    return ds


def _load_local(path: Path, subset: Subset):
    import datasets

    try:
        if path.is_file():
            builder = LOCAL_FILE_BUILDERS.get(path.suffix.lower())
            if builder is None:
                raise ValueError(f"unsupported file type {path.suffix!r} (use {', '.join(LOCAL_FILE_BUILDERS)})")
            return datasets.load_dataset(builder, data_files=str(path), split="train", cache_dir=_cache_dir(path))
        if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
            return _one_split(datasets.load_from_disk(str(path)), subset)
        configs = datasets.get_dataset_config_names(str(path))
        config = subset.config if subset.config in configs else None
        return _one_split(datasets.load_dataset(str(path), config, cache_dir=_cache_dir(path)), subset)
    except IfguideError:
        raise
    except Exception as exc:  # datasets raises many kinds for an unreadable folder or file
        why = str(exc).splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise IfguideError(f"could not read {path} as {subset.hub_id}: {why}",
                           hint=f"pass a download of {subset.hub_id}, a save_to_disk folder or one data file",
                           exit_code=2) from None


def _cache_dir(path: Path) -> str:
    """An arrow cache of its own for each local copy (path, sizes, modification times).

    `datasets` keys the cache of a folder with declared configs by folder name and config only, so two
    copies named alike (a truncated and a full one) would share it and the second would read the first.
    """
    import hashlib
    import json

    import datasets

    from ifguide_cli.core.store.file_integrity import file_identity

    key = hashlib.sha256(json.dumps(file_identity(path), sort_keys=True).encode()).hexdigest()[:16]
    return str(Path(datasets.config.HF_DATASETS_CACHE) / "ifguide-local" / key)


def _one_split(ds, subset: Subset):
    """The subset's split of a DatasetDict (or its only split); a Dataset is returned as is."""
    import datasets

    if isinstance(ds, datasets.Dataset):
        return ds
    if subset.split in ds:
        return ds[subset.split]
    if len(ds) == 1:
        return next(iter(ds.values()))
    raise IfguideError(f"the local copy of {subset.hub_id} has splits {', '.join(ds)} but no {subset.split!r}", exit_code=2)


def _check_source(ds, subset: Subset, where: str) -> None:
    missing = [c for c in subset.columns if c not in ds.column_names]
    if missing:
        raise IfguideError(f"{where} has no column(s) {', '.join(missing)} (columns: {', '.join(ds.column_names)})",
                           hint=f"{subset.name} indexes {subset.hub_id}", exit_code=2)
    needed = int(indices(subset.name).max()) + 1
    if subset.source_rows is not None and len(ds) != subset.source_rows:
        raise IfguideError(f"{where} has {len(ds):,} rows, but {subset.name} indexes {subset.hub_id} "
                           f"({subset.config + '/' if subset.config else ''}{subset.split}, {subset.source_rows:,} rows)",
                           hint="use the unfiltered split in its hub order", exit_code=2)
    if len(ds) < needed:
        raise IfguideError(f"{where} has {len(ds):,} rows, but {subset.name} indexes rows up to {needed - 1:,}",
                           hint=f"use the whole {subset.split} split of {subset.hub_id}", exit_code=2)


# ---- the selected rows -------------------------------------------------------------------------
def select_rows(name: str, source: str | os.PathLike | None = None, limit: int | None = None):
    """The subset's rows (a `datasets.Dataset`) in the reference's order; `limit` keeps the first ones."""
    subset = get(name)
    return open_source(subset, source).select(indices(name)[:limit].tolist())


def records(name: str, source: str | os.PathLike | None = None, limit: int | None = None) -> list[dict]:
    """The subset's rows as the records the stages read, each with its hub row `index`:
    queries {"prompt", "continuation"}, prompts {"prompt", "toxic"}, LAMBADA {"text"}.
    Token chunks are read with `token_blocks` (as Python lists they would not fit in memory)."""
    subset = get(name)
    if "input_ids" in subset.columns:
        raise IfguideError(f"{name} holds pre-tokenized chunks, not text records",
                           hint=f"use {name} as training data (--data) or perplexity data (--ppl-data)", exit_code=2)
    rows = select_rows(name, source, limit).to_list()
    picked, tags = indices(name)[:limit].tolist(), labels(name)[:limit]
    return [_record(subset.role, row, index, toxic) for row, index, toxic in zip(rows, picked, tags, strict=True)]


def _record(role: str, row: dict, index: int, toxic: bool | None) -> dict:
    if role == "queries":
        return {"prompt": _text(row["prompt"]), "continuation": _text(row["continuation"]), "index": index}
    if role == "prompts":
        return {"prompt": _text(row["prompt"]), "toxic": toxic, "index": index}
    return {"text": row["text"], "index": index}  # lambada


def _text(value: Any) -> str | None:
    return value.get("text") if isinstance(value, dict) else value


def token_blocks(name: str, source: str | os.PathLike | None = None, rows_per_block: int = 1024,
                 column: str = "input_ids") -> Iterator:
    """The subset's token rows as int arrays (rows_per_block × seq_len), in the reference's order.

    Reads by `pyarrow.Table.take` on the memory-mapped split: the 1B-token subset is never held at once,
    and picking 488,282 scattered rows costs what reading them costs.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    table = open_source(get(name), source).with_format("arrow")[:]
    picked = indices(name)
    for start in range(0, len(picked), rows_per_block):
        block = table.take(pa.array(picked[start:start + rows_per_block])).column(column).combine_chunks()
        lengths = pc.list_value_length(block)
        if pc.min(lengths).as_py() != pc.max(lengths).as_py():
            raise IfguideError(f"the {column} rows of {name} are not all the same length", exit_code=2)
        yield block.flatten().to_numpy(zero_copy_only=False).reshape(len(block), -1)


def note_foreign_tokenizer(name: str, tokenizer: str | None) -> None:
    """A note when chunks of Pythia (GPT-NeoX) token ids are read for a model whose tokenizer is not named so:
    the ids are used as they are, meaningful only if the tokenizer is the same."""
    if not any(family in str(tokenizer).lower() for family in ("pythia", "neox")):
        from ifguide_cli.core.notes import warn

        warn(f"{name} holds Pythia (GPT-NeoX) token ids, used as they are; the model's tokenizer is {tokenizer}: "
             "meaningful only if that is the same tokenizer")
