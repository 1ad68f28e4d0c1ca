"""Reading datasets: registry names, the reference's subsets, local files and folders, hub ids — one record at a
time, with its position.

Every record comes with where it is in its source (`SourceRecord.line`: the 1-based line of a .jsonl,
.txt or .csv file, the 1-based record number elsewhere), so an error names the file and line, and a
tokenized row can say which line of which file it came from. Files are read line by line (a .json
list and hub datasets excepted), so a large corpus is never held in memory as records.
"""

from __future__ import annotations

import codecs
import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ifguide_cli.core import notes
from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.hub import hub_resource
from ifguide_cli.core.registry import DATASETS, tiny_asset

LOCAL_SUFFIXES = (".jsonl", ".json", ".txt", ".parquet", ".csv")
LINE_FILES = (".jsonl", ".txt", ".csv")  # positions are file lines; elsewhere record numbers
_SNIFF_BYTES = 8192
_DEFAULT_TEXT_FIELDS = ("text", "content", "document")  # tried in turn when --text-field is left at `text`
MAX_LINE_BYTES = 64 << 20  # a line (a record, a .txt document) is read whole up to this size
MAX_DOC_CHARS = 1_000_000  # a longer document is cut: tokenizing one huge text at once takes minutes and gigabytes


# ---- identity ------------------------------------------------------------------------------
def dataset_identity(ref: str, split: str | None = None) -> dict:
    """Where a dataset comes from, cheaply (nothing is read): the reuse key of the stages that use it.

    Packaged files are hashed (they are small); local files and folders by the sha256 of their bytes
    (`content`: hashed once per file version, remembered by path, size and modification time), so the same
    content is the same dataset wherever it lies and however often it is rewritten, and a changed file is never
    mistaken for the one an artifact was built from; a reference subset (core/paper/subsets) by its name, hub id
    and the fingerprint of its row indices.
    """
    subset = reference_subset(ref)
    if subset is not None:
        if split not in (None, subset.split):
            raise IfguideError(f"--split {split} does not apply to {ref}: it is a fixed set of rows of {subset.hub_id} "
                               f"({subset.split} split)", hint="leave out --split", exit_code=2)
        from ifguide_cli.core.paper.subsets import identity as subset_identity

        return subset_identity(ref)
    if ref in DATASETS:
        entry = DATASETS[ref]
        split = split or entry.split
        identity = {"source": "registry", "name": ref, "split": split}
        if entry.hub_id is None:
            from ifguide_cli.core.store.workspace import sha256_file

            identity["sha256"] = sha256_file(_packaged_file(ref, split))
        return identity
    path = Path(ref).expanduser()
    if path.exists() and not (path.is_file() or path.is_dir()):  # reading a device or a pipe could never end
        raise IfguideError(f"{path} is not a regular file (a device, pipe or socket)", hint="pass a dataset file or folder",
                           exit_code=2)
    if path.exists():
        from ifguide_cli.core.data.content import content_identity

        return {"source": "local", "split": split, **content_identity(path)}
    if ref.lower().endswith(LOCAL_SUFFIXES) or ref.startswith((".", "/", "~")):
        raise IfguideError(f"no such file: {path}", hint="check the path", exit_code=2)
    if "/" in ref:
        return {"source": "hub", "hub_id": ref, "split": split or "train"}
    raise IfguideError(f"unknown dataset {ref!r}",
                       hint="use a registry name (`ifguide registry datasets`), a local .jsonl/.txt/.parquet/.csv "
                            "file or save_to_disk folder, or a hub id like org/name", exit_code=2)


def reference_subset(ref: str):
    """The reference's fixed subset named `ref` (core/paper/subsets: owt-train-1b, rtp-test, …), or None."""
    from ifguide_cli.core.paper.subsets import SUBSETS

    return SUBSETS.get(ref)


def is_token_subset(ref: str) -> bool:
    """A reference subset of pre-tokenized chunks (the OWT ones): token rows as they are, not text records."""
    subset = reference_subset(ref)
    return subset is not None and "input_ids" in subset.columns


def is_packaged(ref: str) -> bool:
    """A dataset shipped inside the package (the `tiny` family)."""
    return ref in DATASETS and DATASETS[ref].hub_id is None


def _packaged_file(ref: str, split: str | None) -> Path:
    entry = DATASETS[ref]
    return tiny_asset(entry.files.get(split or entry.split, entry.files["train"]))


# ---- records with positions ----------------------------------------------------------------
@dataclass(frozen=True)
class SourceRecord:
    index: int  # 0-based position among the source's records (blank lines are not records)
    line: int  # 1-based file line (.jsonl/.txt/.csv: where the record starts) or record number (elsewhere)
    record: dict


class Source:
    """A dataset the user named, ready to be read record by record."""

    def __init__(self, ref: str, split: str | None = None):
        self.ref = ref
        self.identity = dataset_identity(ref, split)
        self.split = self.identity.get("split")
        self.path: Path | None = None
        self.subset = reference_subset(ref)
        if self.identity["source"] == "local":
            self.path = Path(ref).expanduser()
        elif is_packaged(ref):
            self.path = _packaged_file(ref, self.split)
        # what a message or a row's source map calls the source: a file path or a hub id
        self.file = str(self.path.resolve() if self.path is not None else (
            self.identity.get("hub_id") or DATASETS[ref].hub_id))
        # `line` when positions are file lines, `record` when they are record numbers
        line_file = self.path is not None and self.path.is_file() and self.path.suffix.lower() in LINE_FILES
        self.positions = "line" if line_file else "record"

    def where(self, line: int) -> str:
        """`FILE:LINE`, or `FILE record N` where positions are record numbers."""
        return f"{self.file}:{line}" if self.positions == "line" else f"{self.file} record {line}"

    def records(self, limit: int | None = None) -> Iterator[SourceRecord]:
        """The records in order, each with its position; at most `limit`."""
        for n, rec in enumerate(self._read(limit)):
            if limit is not None and n >= limit:
                return
            yield rec

    def _read(self, limit: int | None) -> Iterator[SourceRecord]:
        if self.subset is not None:
            return _read_subset(self.ref, limit)
        if self.path is not None:
            return _read_local(self.path, self.split)
        if self.identity["source"] == "registry":
            entry = DATASETS[self.ref]
            assert entry.hub_id is not None, "a packaged dataset is read from its file (self.path)"
            return _read_hub(entry.hub_id, entry.config, self.split)
        return _read_hub(self.identity["hub_id"], None, self.split)


def load_records(ref: str, *, split: str | None = None, limit: int | None = None) -> tuple[list[dict], dict]:
    """Records (dicts) of a dataset and its identity (see `dataset_identity`)."""
    source = Source(ref, split)
    records = [r.record for r in source.records(limit)]
    if not records:
        raise IfguideError(f"dataset {ref!r} has no records")
    return records, source.identity


# ---- local files ---------------------------------------------------------------------------
def _read_local(path: Path, split: str | None) -> Iterator[SourceRecord]:
    if path.is_dir():
        return _read_folder(path, split)
    if not path.is_file():  # a pipe or a device: reading it could wait forever
        raise IfguideError(f"{path} is not a regular file", hint="pass a dataset file or folder", exit_code=2)
    suffix = path.suffix.lower()
    readers = {".jsonl": _read_jsonl, ".json": _read_json, ".txt": _read_txt, ".csv": _read_csv, ".parquet": _read_parquet}
    if suffix not in readers:
        raise IfguideError(f"unsupported dataset file {path.name}",
                           hint=f"use one of {', '.join(LOCAL_SUFFIXES)} or a save_to_disk folder", exit_code=2)
    return readers[suffix](path)


def _not_text(path: Path, line: int | None, what: str) -> IfguideError:
    at = f"{path}:{line}" if line else str(path)
    return IfguideError(f"{at} {what}", hint="save the file as UTF-8 text (e.g. `iconv -f latin1 -t utf-8`); "
                                             "compressed files must be decompressed first", exit_code=2)


def _text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of each physical line (split on \\n only), decoded as UTF-8 with a clear error.

    A line is read whole up to MAX_LINE_BYTES (memory stays bounded whatever the file): the rest of a longer .txt
    line is skipped with a note; a longer record in any other format is an error.
    """
    with open(path, "rb") as fh:
        if b"\x00" in fh.read(_SNIFF_BYTES):
            raise _not_text(path, None, "looks like a binary file, not text")
        fh.seek(0)
        for lineno, (raw, whole) in enumerate(_physical_lines(fh), 1):
            if not whole:
                _cut_line(path, lineno)
            try:
                line = codecs.getincrementaldecoder("utf-8")().decode(raw, final=whole)
            except UnicodeDecodeError:
                raise _not_text(path, lineno, "is not UTF-8 text") from None
            yield lineno, line.removeprefix("\ufeff") if lineno == 1 else line


def _physical_lines(fh) -> Iterator[tuple[bytes, bool]]:
    """(bytes, whole) of each line, at most MAX_LINE_BYTES of it; `whole` is False when the rest was skipped."""
    while raw := fh.readline(MAX_LINE_BYTES):
        whole = len(raw) < MAX_LINE_BYTES or raw.endswith(b"\n")
        if not whole:
            while (rest := fh.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                pass
        yield raw, whole


def _cut_line(path: Path, lineno: int) -> None:
    if path.suffix.lower() != ".txt":
        raise IfguideError(f"{path}:{lineno} is longer than {MAX_LINE_BYTES >> 20} MiB", hint="one record per line",
                           exit_code=2)
    notes.warn(f"{path}:{lineno} is longer than {MAX_LINE_BYTES >> 20} MiB: only its beginning is read")


def _as_record(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        kind = "a JSON list" if isinstance(value, list) else f"a JSON {type(value).__name__}"
        raise IfguideError(f"{where} is {kind}, not a record (an object with a text field)",
                           hint='write one object per record, e.g. {"text": "...", "label": 0}', exit_code=2)
    return value


def _parse_json(text: str, where: str, hint: str) -> Any:
    """One JSON value; invalid JSON, nesting too deep for the parser, and a lone surrogate (`\\ud800`, which no text
    encoding can hold and which breaks every tokenizer) are one line naming `where`."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise _too_deep(where, hint) from None
    except ValueError:
        raise IfguideError(f"{where} is not valid JSON", hint=hint, exit_code=2) from None
    return _checked_text(value, text, where)


def _too_deep(where: str, hint: str) -> IfguideError:
    return IfguideError(f"{where} is nested too deeply to be a record", hint=hint, exit_code=2)


def _checked_text(value: Any, text: str, where: str) -> Any:
    if "\\u" in text and _has_lone_surrogate(value):
        raise IfguideError(f"{where} holds a lone surrogate escape (\\ud800–\\udfff), which is not text",
                           hint="fix the escape, or write the character itself as UTF-8", exit_code=2)
    return value


def _has_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(v) for v in value)
    return False


def _read_jsonl(path: Path) -> Iterator[SourceRecord]:
    index = 0
    for lineno, line in _text_lines(path):
        if not line.strip():
            continue
        value = _parse_json(line, f"{path}:{lineno}", "one JSON object per line")
        yield SourceRecord(index, lineno, _as_record(value, f"{path}:{lineno}"))
        index += 1


def _read_txt(path: Path) -> Iterator[SourceRecord]:
    index = 0
    for lineno, line in _text_lines(path):
        text = line.rstrip("\r\n")
        if text.strip():
            yield SourceRecord(index, lineno, {"text": text})
            index += 1


def _read_json(path: Path) -> Iterator[SourceRecord]:
    raw = path.read_bytes()
    if b"\x00" in raw[:_SNIFF_BYTES]:
        raise _not_text(path, None, "looks like a binary file, not text")
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise _not_text(path, raw[: exc.start].count(b"\n") + 1, "is not UTF-8 text") from None
    try:
        data = _checked_text(json.loads(text), text, str(path))
    except RecursionError:
        raise _too_deep(str(path), "a .json dataset is a list of records") from None
    except ValueError:
        yield from _read_jsonl(path)  # a .json file written as JSON lines
        return
    for n, value in enumerate(_json_list(data, path)):
        yield SourceRecord(n, n + 1, _as_record(value, f"{path} record {n + 1}"))


def _json_list(data: Any, path: Path) -> list:
    """The records of a .json file: the list itself, or the one list inside a top-level object."""
    if isinstance(data, list):
        return data
    lists = [k for k, v in data.items() if isinstance(v, list)] if isinstance(data, dict) else []
    if len(lists) == 1:
        return data[lists[0]]
    found = f"lists under {', '.join(map(repr, lists))}" if lists else "no list of records"
    raise IfguideError(f"{path} holds {found}", hint="a .json dataset is a list of records (or an object with one such list); "
                                                     "or use .jsonl, one record per line", exit_code=2)


def _read_csv(path: Path) -> Iterator[SourceRecord]:
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))  # long documents are single fields
    starts: list[int] = []  # non-blank lines consumed since the last record: the first is where it starts

    def lines():
        for lineno, line in _text_lines(path):
            if line.strip():
                starts.append(lineno)
            yield line

    reader = csv.DictReader(lines())
    try:
        _ = reader.fieldnames  # reads the header line
        starts.clear()
        for index, row in enumerate(reader):
            yield SourceRecord(index, starts[0] if starts else reader.line_num, row)
            starts.clear()
    except csv.Error as exc:
        raise IfguideError(f"{path}:{reader.line_num} is not valid CSV ({exc})", exit_code=2) from None


def _read_parquet(path: Path) -> Iterator[SourceRecord]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        batches = pq.ParquetFile(path).iter_batches(batch_size=1024)
    except (pa.ArrowException, OSError) as exc:
        raise IfguideError(f"{path} is not a parquet file ({exc})", exit_code=2) from None
    index = 0
    try:
        for batch in batches:
            for row in batch.to_pylist():
                yield SourceRecord(index, index + 1, row)
                index += 1
    except (pa.ArrowException, OSError) as exc:  # a valid footer over corrupt data pages
        raise IfguideError(f"{path} is damaged after record {index} ({str(exc).splitlines()[0][:200]})",
                           hint="rewrite the parquet file", exit_code=2) from None


def _read_folder(path: Path, split: str | None) -> Iterator[SourceRecord]:
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as exc:
        raise IfguideError(f"{path} is not a dataset folder written by save_to_disk ({exc})") from None
    if isinstance(ds, datasets.DatasetDict):
        ds = ds[split or ("train" if "train" in ds else next(iter(ds)))]
    for n, row in enumerate(ds):
        yield SourceRecord(n, n + 1, row)


def _read_hub(hub_id: str, config: str | None, split: str | None) -> Iterator[SourceRecord]:
    import datasets

    with hub_resource("dataset", hub_id, "a local .jsonl/.parquet file or save_to_disk folder"):
        ds = datasets.load_dataset(hub_id, config, split=split)
    for n, row in enumerate(ds):
        yield SourceRecord(n, n + 1, row)


def _read_subset(name: str, limit: int | None) -> Iterator[SourceRecord]:
    """A reference subset's records in the reference's order; a record's position is its hub row (1-based)."""
    from ifguide_cli.core.paper.subsets import records

    for n, record in enumerate(records(name, limit=limit)):
        yield SourceRecord(n, record["index"] + 1, record)


# ---- fields --------------------------------------------------------------------------------
def record_text(record: dict, field: str = "text", where: str | None = None) -> str:
    """The text of a record: `field`, or (for the default `text`) a `content`/`document` field.

    `where` (FILE:LINE) makes a missing or non-text field one line naming the place and the fields there.
    """
    value = record.get(field)
    if value is None and field == "text":
        value = next((record[alt] for alt in _DEFAULT_TEXT_FIELDS if isinstance(record.get(alt), str)), None)
    if value is None:
        at = f"{where} has" if where else "record has"
        raise IfguideError(f"{at} no text field {field!r} (fields: {', '.join(map(str, record))})",
                           hint="pass --text-field NAME", exit_code=2)
    if not isinstance(value, str):
        at = f"{where}: " if where else ""
        raise IfguideError(f"{at}field {field!r} is {type(value).__name__} {value!r:.40}, not text",
                           hint="pass --text-field NAME of a text field", exit_code=2)
    return value


# ---- query pairs and evaluation prompts ----------------------------------------------------
def load_queries(ref: str, limit: int | None = None) -> tuple[list[dict], dict]:
    """Prompt + continuation pairs (RTP-style nested {"text": …} fields are unwrapped)."""
    records, identity = load_records(ref, limit=limit)
    pairs = []
    for r in records:
        prompt, cont = _unwrap(r.get("prompt")), _unwrap(r.get("continuation"))
        if not (isinstance(prompt, str) and isinstance(cont, str)):
            got = ", ".join(f"{k}: {type(v).__name__}" for k, v in r.items())
            raise IfguideError(f"query set {ref!r} needs text `prompt` and `continuation` fields (got {got})", exit_code=2)
        pairs.append({"prompt": prompt, "continuation": cont})
    return pairs, identity


def load_prompts(ref: str, limit: int | None = None, toxic_threshold: float = 0.5) -> tuple[list[dict], dict]:
    """Evaluation prompts as {"prompt", "toxic"} (toxic is None when the set has no label)."""
    from ifguide_cli.core.data.labels import parse_label

    records, identity = load_records(ref)
    prompts = []
    for n, r in enumerate(records):
        where = f"prompt set {ref} record {n + 1}"
        if "prompts" in r and isinstance(r["prompts"], list):  # BOLD: several prompts per record
            if not all(isinstance(p, str) for p in r["prompts"]):
                raise IfguideError(f"{where}: `prompts` holds something other than text", exit_code=2)
            prompts += [{"prompt": p, "toxic": None} for p in r["prompts"]]
            continue
        raw = r.get("prompt", r.get("input", r.get("text")))
        text = _unwrap(raw)
        if not isinstance(text, str):
            raise IfguideError(f"prompt set {ref!r} needs a `prompt` (or `input`/`text`) field (got {', '.join(r)})", exit_code=2)
        toxic = r.get("toxic")
        if toxic is None and isinstance(raw, dict) and raw.get("toxicity") is not None:
            score = raw["toxicity"]  # RTP: the prompt's own toxicity score
            if isinstance(score, bool) or not isinstance(score, (int, float)):
                raise IfguideError(f"{where}: prompt.toxicity is {score!r:.40}, not a score in [0, 1]", exit_code=2)
            toxic = score >= toxic_threshold
        if isinstance(toxic, str):  # a CSV column: "true"/"0"…
            toxic = parse_label(toxic, f"{ref} record {n + 1}", "toxic")
        if toxic is not None and (not isinstance(toxic, (bool, int, float)) or toxic not in (0, 1)):
            raise IfguideError(f"{where}: `toxic` is {toxic!r:.40}; a label is true/false or 1/0", exit_code=2)
        prompts.append({"prompt": text, "toxic": None if toxic is None else bool(toxic)})
    return (prompts[:limit] if limit else prompts), identity


def _unwrap(value: Any) -> Any:
    return value.get("text") if isinstance(value, dict) else value


# ---- documents: text + label with their position ---------------------------------------------
@dataclass(frozen=True)
class SourceDoc:
    doc_id: int  # the record's index in the source
    line: int  # see SourceRecord.line
    text: str
    label: bool | None = None
    char_offset: int = 0  # where `text` starts in its document (a stored part of it, `mask transfer`)
    doc_chars: int | None = None  # the document's length in characters; None: `text` is the whole document


def iter_documents(source: Source, text_field: str = "text", label_field: str | None = None,
                   limit: int | None = None) -> Iterator[SourceDoc]:
    """The documents of a source in order; a missing text or a bad label is one line naming the file and line."""
    from ifguide_cli.core.data.labels import parse_label

    noted = False
    for rec in source.records(limit):
        where = source.where(rec.line)
        text = record_text(rec.record, text_field, where)
        if len(text) > MAX_DOC_CHARS:
            if not noted:
                notes.warn(f"{where} has {len(text):,} characters: only the first {MAX_DOC_CHARS:,} are used (so are "
                           "those of any further document that long); split long texts into several records")
                noted = True
            text = text[:MAX_DOC_CHARS]
        label = None if label_field is None else parse_label(rec.record.get(label_field), where, label_field)
        yield SourceDoc(rec.index, rec.line, text, label)
