"""Datasets: load records from the registry, a local file or the hub; tokenize the training corpus once.

The tokenized training corpus is itself an artifact (kind `datasets`): a fixed
(docs × seq_len) tensor of token ids. Scores, masks and training all index the same
tensor, so a mask always lines up with the data it was computed on.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .errors import IfguideError
from .hub import hub_resource
from .progress import NULL
from .registry import DATASETS, tiny_asset

CORPUS_FILE = "input_ids.safetensors"
LOCAL_SUFFIXES = (".jsonl", ".json", ".txt", ".parquet", ".csv")


# ---- raw records ---------------------------------------------------------------------------
def dataset_identity(ref: str, split: str | None = None) -> dict:
    """Where a dataset comes from, cheaply (nothing is read): the reuse key of the stages that use it.

    Packaged files are hashed (they are small); local files and folders are identified by size and
    modification time, so a changed file is never mistaken for the one an artifact was built from.
    """
    if ref in DATASETS:
        entry = DATASETS[ref]
        split = split or entry.split
        identity = {"source": "registry", "name": ref, "split": split}
        if entry.hub_id is None:
            from .workspace import sha256_file

            identity["sha256"] = sha256_file(tiny_asset(entry.files.get(split, entry.files["train"])))
        return identity
    path = Path(ref).expanduser()
    if path.exists():
        return {"source": "local", "split": split, **file_identity(path)}
    if "/" in ref and not ref.startswith((".", "/", "~")):
        return {"source": "hub", "hub_id": ref, "split": split or "train"}
    raise IfguideError(f"unknown dataset {ref!r}",
                       hint="use a registry name (`ifguide registry datasets`), a local .jsonl/.txt/.parquet/.csv "
                            "file or save_to_disk folder, or a hub id like org/name", exit_code=2)


def file_identity(path: Path) -> dict:
    """Path, size and modification time of a file, or of every file in a folder: cheap, and changes with the content."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    stats = [(p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    if path.is_file():
        return {"path": str(path.resolve()), "size": stats[0][0], "mtime_ns": stats[0][1]}
    return {"path": str(path.resolve()), "files": {str(p.relative_to(path)): list(st) for p, st in zip(files, stats)}}


def load_records(ref: str, *, split: str | None = None, limit: int | None = None) -> tuple[list[dict], dict]:
    """Records (dicts) of a dataset and its identity (see `dataset_identity`)."""
    identity = dataset_identity(ref, split)
    if identity["source"] == "registry":
        entry = DATASETS[ref]
        if entry.hub_id is None:
            records = _read_jsonl(tiny_asset(entry.files.get(identity["split"], entry.files["train"])))
        else:
            records = _load_hub(entry.hub_id, entry.config, identity["split"], limit)
    elif identity["source"] == "local":
        records = _load_local(Path(ref).expanduser(), split)
    else:
        records = _load_hub(ref, None, identity["split"], limit)
    if limit is not None:
        records = records[:limit]
    if not records:
        raise IfguideError(f"dataset {ref!r} has no records")
    return records, identity


def _read_jsonl(path: Path) -> list[dict]:
    records = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except ValueError:
                    raise IfguideError(f"{path}:{lineno} is not valid JSON", hint="one JSON object per line") from None
    return records


def _load_local(path: Path, split: str | None) -> list[dict]:
    if path.is_dir():
        import datasets

        try:
            ds = datasets.load_from_disk(str(path))
        except Exception as exc:
            raise IfguideError(f"{path} is not a dataset folder written by save_to_disk ({exc})") from None
        if isinstance(ds, datasets.DatasetDict):
            split = split or ("train" if "train" in ds else next(iter(ds)))
            ds = ds[split]
        return ds.to_list()
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _read_jsonl(path)
    if suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, list) else _read_jsonl(path)
    if suffix == ".txt":
        return [{"text": line.rstrip("\n")} for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if suffix in (".parquet", ".csv"):
        import datasets

        return datasets.load_dataset(suffix[1:], data_files=str(path), split="train").to_list()
    raise IfguideError(f"unsupported dataset file {path.name}", hint=f"use one of {', '.join(LOCAL_SUFFIXES)} or a save_to_disk folder",
                       exit_code=2)


def _load_hub(hub_id: str, config: str | None, split: str, limit: int | None) -> list[dict]:
    import datasets

    with hub_resource("dataset", hub_id, "a local .jsonl/.parquet file or save_to_disk folder"):
        ds = datasets.load_dataset(hub_id, config, split=split)
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    return ds.to_list()


def record_text(record: dict, field: str = "text") -> str:
    value = record.get(field)
    if value is None:
        for alt in ("text", "content", "document"):
            if isinstance(record.get(alt), str):
                return record[alt]
        raise IfguideError(f"record has no text field {field!r} (fields: {', '.join(record)})", hint="pass --text-field", exit_code=2)
    return value


# ---- query pairs and evaluation prompts ----------------------------------------------------
def load_queries(ref: str, limit: int | None = None) -> tuple[list[dict], dict]:
    """Prompt + continuation pairs (RTP-style nested {"text": …} fields are unwrapped)."""
    records, identity = load_records(ref, limit=limit)
    pairs = []
    for r in records:
        prompt, cont = _unwrap(r.get("prompt")), _unwrap(r.get("continuation"))
        if prompt is None or cont is None:
            raise IfguideError(f"query set {ref!r} needs `prompt` and `continuation` fields (got {', '.join(r)})", exit_code=2)
        pairs.append({"prompt": prompt, "continuation": cont})
    return pairs, identity


def load_prompts(ref: str, limit: int | None = None, toxic_threshold: float = 0.5) -> tuple[list[dict], dict]:
    """Evaluation prompts as {"prompt", "toxic"} (toxic is None when the set has no label)."""
    records, identity = load_records(ref)
    prompts = []
    for r in records:
        if "prompts" in r and isinstance(r["prompts"], list):  # BOLD: several prompts per record
            prompts += [{"prompt": p, "toxic": None} for p in r["prompts"]]
            continue
        raw = r.get("prompt", r.get("input", r.get("text")))
        text = _unwrap(raw)
        if not isinstance(text, str):
            raise IfguideError(f"prompt set {ref!r} needs a `prompt` (or `input`/`text`) field (got {', '.join(r)})", exit_code=2)
        toxic = r.get("toxic")
        if toxic is None and isinstance(raw, dict) and raw.get("toxicity") is not None:
            toxic = raw["toxicity"] >= toxic_threshold  # RTP: the prompt's own toxicity score
        prompts.append({"prompt": text, "toxic": None if toxic is None else bool(toxic)})
    return (prompts[:limit] if limit else prompts), identity


def _unwrap(value: Any) -> Any:
    return value.get("text") if isinstance(value, dict) else value


# ---- the tokenized training corpus ---------------------------------------------------------
@dataclass(frozen=True)
class CorpusConfig:
    seq_len: int = 2048
    packing: bool = True  # concatenate documents into full blocks (the paper's OpenWebText chunks)
    max_examples: int | None = None
    text_field: str = "text"
    split: str | None = None


def default_corpus_config(ref: str, **overrides) -> CorpusConfig:
    """Per-document 64-token rows for the tiny corpus (it carries per-document labels), packed 2048 otherwise."""
    base = CorpusConfig(seq_len=64, packing=False) if ref.startswith("tiny") else CorpusConfig()
    return CorpusConfig(**{**asdict(base), **{k: v for k, v in overrides.items() if v is not None}})


@dataclass
class TokenizedCorpus:
    input_ids: Any  # torch.LongTensor (docs, seq_len)
    attention_mask: Any  # torch.LongTensor (docs, seq_len)
    planted_toxic: Any | None = None  # torch.BoolTensor (docs,), ground truth of the tiny corpus only

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.input_ids.shape)


def tokenize_corpus(records: list[dict], tokenizer, config: CorpusConfig, reporter=NULL) -> TokenizedCorpus:
    import torch

    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    if config.max_examples is not None:
        records = records[: config.max_examples] if not config.packing else records
    texts = [record_text(r, config.text_field) for r in records]
    ids_per_doc = []
    with reporter.task("tokenizing", total=len(texts)) as task:
        for start in range(0, len(texts), 1000):
            batch = tokenizer(texts[start:start + 1000], add_special_tokens=False)["input_ids"]
            ids_per_doc += [ids + [eos] for ids in batch]
            task.advance(len(batch))
    T = config.seq_len
    if config.packing:
        flat = [t for ids in ids_per_doc for t in ids]
        n = len(flat) // T
        if config.max_examples is not None:
            n = min(n, config.max_examples)
        if n == 0:
            raise IfguideError(f"the dataset has {len(flat)} tokens, fewer than one {T}-token block", hint="lower --seq-len")
        input_ids = torch.tensor(flat[: n * T], dtype=torch.long).view(n, T)
        attention = torch.ones_like(input_ids)
        planted = None
    else:
        input_ids = torch.full((len(ids_per_doc), T), pad, dtype=torch.long)
        attention = torch.zeros_like(input_ids)
        for i, ids in enumerate(ids_per_doc):
            ids = ids[:T]
            input_ids[i, : len(ids)] = torch.tensor(ids)
            attention[i, : len(ids)] = 1
        planted = None
        if records and "planted_toxic" in records[0]:
            planted = torch.tensor([bool(r.get("planted_toxic")) for r in records])
    return TokenizedCorpus(input_ids, attention, planted)


def save_corpus(corpus: TokenizedCorpus, folder: Path) -> None:
    import torch
    from safetensors.torch import save_file

    tensors = {"input_ids": corpus.input_ids.to(torch.int32).contiguous(), "attention_mask": corpus.attention_mask.to(torch.uint8)}
    if corpus.planted_toxic is not None:
        tensors["planted_toxic"] = corpus.planted_toxic.to(torch.uint8)
    save_file(tensors, str(folder / CORPUS_FILE))


def load_corpus(art) -> TokenizedCorpus:
    """The token tensor of a `datasets` artifact."""
    from safetensors.torch import load_file

    if art.kind != "datasets":
        raise IfguideError(f"{art.id} is a {art.kind} artifact, not a dataset", exit_code=2)
    t = load_file(str(art.file(CORPUS_FILE)))
    planted = t.get("planted_toxic")
    return TokenizedCorpus(t["input_ids"].long(), t["attention_mask"].long(), None if planted is None else planted.bool())


def is_source_ref(data_ref: str) -> bool:
    """A dataset to load (registry name, local path, hub id), as opposed to a `datasets` artifact reference."""
    from .registry import DATASETS

    return data_ref in DATASETS or Path(data_ref).expanduser().exists() or (
        "/" in data_ref and not data_ref.startswith((".", "/", "~")))


def existing_corpus(workspace, data_ref: str, mref, seq_len: int | None):
    """The `datasets` artifact DATA names, checked against the model's tokenizer and --seq-len;
    None when DATA is a source (registry name, local path, hub id) to be tokenized."""
    from .errors import ArtifactNotFound

    if is_source_ref(data_ref):
        return None
    try:
        art = workspace.resolve(data_ref, "datasets")
    except ArtifactNotFound:
        return None
    if art.config.get("tokenizer") != mref.tokenizer:
        raise IfguideError(f"dataset {art.id} was tokenized with {art.config.get('tokenizer')!r}, but the model uses "
                           f"{mref.tokenizer!r}", hint="pass the source dataset instead", exit_code=2)
    if seq_len is not None and art.config.get("seq_len") != seq_len:
        raise IfguideError(f"dataset {art.id} has seq_len {art.config.get('seq_len')}, not --seq-len {seq_len}", exit_code=2)
    return art


def resolve_corpus(workspace, data_ref: str, mref, seq_len: int | None, *, reporter=NULL, force: bool = False,
                   barrier=lambda: None):
    """The `datasets` artifact for DATA: the one it names, else the source tokenized for the model (built once).

    Under torchrun rank 0 builds it and calls `barrier()` after; the other ranks call `barrier()` first, then
    find it stored. Returns (artifact, reused).
    """
    from .dist import is_main_process

    art = existing_corpus(workspace, data_ref, mref, seq_len)
    if art is not None:
        return art, True
    main = is_main_process()
    if not main:
        barrier()
    result = corpus_artifact(workspace, data_ref, mref, default_corpus_config(data_ref, seq_len=seq_len),
                             reporter=reporter if main else NULL, force=force and main)
    if main:
        barrier()
    return result


def tokenizer_fingerprint(mref) -> str | None:
    """sha256 of the packaged or local tokenizer files (hub tokenizers are pinned by their id)."""
    from .registry import tiny_asset as asset

    from .workspace import sha256_file

    if mref.tokenizer == "tiny":
        return sha256_file(asset("tokenizer.json"))
    folder = Path(mref.tokenizer)  # a checkpoint keeps its base tokenizer's identity, so data is shared with the base
    if folder.is_dir():
        files = [folder / n for n in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "tokenizer.model")]
        return "".join(sha256_file(f)[:16] for f in files if f.is_file()) or None
    return None


def corpus_artifact(workspace, data_ref: str, mref, config: CorpusConfig, *, reporter=NULL, force: bool = False):
    """The tokenized corpus for (dataset, tokenizer, layout), built once and reused. Returns (artifact, reused)."""
    from .models import load_tokenizer

    if config.seq_len < 2:
        raise IfguideError(f"--seq-len must be at least 2, got {config.seq_len}", exit_code=2)
    stage_config = {"data": dataset_identity(data_ref, config.split), "tokenizer": mref.tokenizer,
                    "tokenizer_sha256": tokenizer_fingerprint(mref), **asdict(config)}

    def build(ctx):  # the records are read only when the corpus is not stored yet
        records, _ = load_records(data_ref, split=config.split)
        tokenizer = load_tokenizer(mref)
        corpus = tokenize_corpus(records, tokenizer, config, reporter)
        save_corpus(corpus, ctx.staging)
        summary = {"documents": corpus.shape[0], "seq_len": corpus.shape[1],
                   "tokens": int(corpus.attention_mask.sum()), "source": data_ref}
        if corpus.planted_toxic is not None:
            summary["planted_toxic_documents"] = int(corpus.planted_toxic.sum())
        return summary

    return workspace.create("datasets", stage_config, [], build, force=force)


def recorded_dataset(ws, art, given=None, *, what: str, hint: str, missing_hint: str | None = None):
    """The dataset artifact `art` (scores, mask) was computed on, checked against one the user gave.

    `given` (a dataset artifact or None) must be the recorded one when the artifact records a dataset;
    without `given`, the recorded dataset is returned (None when the artifact records none).
    `what` names the artifact in messages ("scores 1a2b…", "mask 1a2b…"), `hint` says what to do on a mismatch,
    `missing_hint` what to do when the recorded dataset was removed.
    """
    recorded = art.config.get("dataset") if art is not None else None
    if given is not None:
        if recorded and recorded != given.id:
            raise IfguideError(f"{what} was computed on dataset {recorded}, not {given.id}", hint=hint, exit_code=2)
        return given
    if not recorded:
        return None
    dataset = ws.by_id(recorded)
    if dataset is None:
        raise IfguideError(f"dataset {recorded} of {what} is no longer in the workspace",
                           hint=missing_hint or "recreate it (the same `--data` and `--seq-len`), or rebuild this artifact")
    return dataset
