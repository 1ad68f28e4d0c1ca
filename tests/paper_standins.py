"""Local stand-ins of the hub datasets the reference subsets index: the same columns and row counts, generated here.

Each row carries its own hub row index (in its text, or in its first tokens), so a wrong pick shows. They are
laid out as `$IFGUIDE_DATA_DIR/<hub id>` expects (`hf download … --local-dir`, or save_to_disk), so the
commands find them by the subset's name alone, offline.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ifguide_cli.core.paper import subsets

OWT_ROWS = 4_398_748  # a stand-in needs every row up to the largest index (4,398,747)
RTP_ROWS = 99_442
LAMBADA_ROWS = 5_153


def owt_chunks(folder: Path, width: int = 8, vocab: int = 2048) -> Path:
    """The pre-tokenized OpenWebText chunks (save_to_disk), `width` ≥ 3 uint16 tokens per row: the row index in
    base 1024 (three tokens, see `owt_row`), then (row × j) % vocab; every id is below `vocab` (≥ 1024)."""
    import datasets
    import pyarrow as pa

    rows = np.arange(OWT_ROWS, dtype=np.int64)
    columns = [rows % 1024, (rows // 1024) % 1024, rows // 1024**2] + [(rows * j) % vocab for j in range(3, width)]
    ids = np.stack(columns, axis=1).astype(np.uint16)
    table = pa.table({"input_ids": pa.FixedSizeListArray.from_arrays(pa.array(ids.ravel()), width)})
    datasets.Dataset(table).save_to_disk(str(folder))
    return folder


def owt_rows(chunks):
    """The hub row of each stand-in chunk (rows × width, see `owt_chunks`), as int64."""
    chunks = np.asarray(chunks, dtype=np.int64)
    return chunks[:, 0] + 1024 * chunks[:, 1] + 1024**2 * chunks[:, 2]


def rtp_table():
    """RealToxicityPrompts' layout (99,442 rows): prompt / continuation structs with text ("prompt <row>",
    "continuation <row>") and scores."""
    import pyarrow as pa

    n = RTP_ROWS
    score = pa.array(np.linspace(0, 1, n))

    def part(kind):
        return pa.StructArray.from_arrays([pa.array([f"{kind} {i}" for i in range(n)]), score], ["text", "toxicity"])

    return pa.table({"filename": [f"{i:07d}.txt" for i in range(n)], "begin": np.zeros(n, np.int64),
                     "end": np.ones(n, np.int64), "challenging": np.zeros(n, bool),
                     "prompt": part("prompt"), "continuation": part("continuation")})


def rtp_file(path: Path) -> Path:
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(rtp_table(), path)
    return path


def lambada_snapshot(folder: Path, rows: int = LAMBADA_ROWS) -> Path:
    """What `hf download EleutherAI/lambada_openai --repo-type dataset --local-dir FOLDER` lays out."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"text": [f"passage {i} ends with word{i}" for i in range(rows)]})
    for config in ("default", "en"):
        (folder / config).mkdir(parents=True)
        pq.write_table(table, folder / config / "test-00000-of-00001.parquet")
    (folder / "README.md").write_text("---\nconfigs:\n" + "".join(
        f"- config_name: {c}\n  data_files:\n  - split: test\n    path: {c}/test-*\n" for c in ("default", "en")) + "---\n")
    return folder


def data_dir(root: Path, *, owt_width: int = 8, owt_vocab: int = 2048) -> Path:
    """A `$IFGUIDE_DATA_DIR` holding all three: the OWT chunks (save_to_disk), RTP as one parquet file
    (`<hub id>.parquet`) and a LAMBADA download folder."""
    owt_chunks(root / subsets.OWT_CHUNKS, owt_width, owt_vocab)
    rtp_file(root / f"{subsets.RTP}.parquet")
    lambada_snapshot(root / subsets.LAMBADA)
    return root
