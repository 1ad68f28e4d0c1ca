"""The packaged index bundle: the reference's .npy index files in one small, lossless .npz.

Each index vector is stored as its first differences in int32 (`np.savez_compressed`): order and
repeats are kept exactly (the 1B-token train file is unsorted and repeats 4 rows), sorted files shrink
~10× and the unsorted ones cost what their int32 values cost. `decode` is a cumulative sum back to int64.
The sha256 of each original vector (int64, little-endian) is recorded in the subset registry, so the
packaged copy is checked against the authors' files without them.

Rebuild the bundle from the authors' `data/` folder (or a copy of it):
    python -m ifguide_cli.core.paper.indexfile DATA_DIR OUT.npz
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

# subset name -> the authors' file, relative to their `data/` folder
REFERENCE_FILES = {
    "owt-train-1b": "openwebtext/train_indices.npy",
    "owt-valid": "openwebtext/valid_indices.npy",
    "owt-test": "openwebtext/test_indices.npy",
    "rtp-queries-toxic": "RTP/query_indices/toxic_indices.npy",
    "rtp-queries-nontoxic": "RTP/query_indices/nontoxic_indices.npy",
    "rtp-test-toxic": "RTP/test_indices/toxic_indices.npy",
    "rtp-test-nontoxic": "RTP/test_indices/nontoxic_indices.npy",
    "lambada-reference": "lambada/test_indices.npy",
}


def encode(indices):
    """int32 first differences of a vector of row indices (the first element is kept as is)."""
    import numpy as np

    values = np.asarray(indices, dtype=np.int64)
    if values.ndim != 1 or (values.size and (values.min() < 0 or values.max() >= 2**31)):
        raise ValueError("row indices must be a 1-D vector of non-negative int32-range integers")
    return np.diff(values, prepend=0).astype(np.int32)


def decode(deltas):
    """The int64 row indices back from `encode`'s differences."""
    import numpy as np

    return np.cumsum(np.asarray(deltas, dtype=np.int64))


def fingerprint(indices) -> str:
    """sha256 of the vector as int64 little-endian bytes: the identity of a subset's row selection."""
    import numpy as np

    return hashlib.sha256(np.ascontiguousarray(indices, dtype="<i8").tobytes()).hexdigest()


def pack(data_dir: str | Path, out: str | Path) -> dict[str, str]:
    """Write the bundle from the authors' `data/` folder; returns each subset's fingerprint."""
    import numpy as np

    arrays, prints = {}, {}
    for name, rel in REFERENCE_FILES.items():
        original = np.load(Path(data_dir) / rel, allow_pickle=False)
        arrays[name] = encode(original)
        prints[name] = fingerprint(original)
    np.savez_compressed(out, **arrays)
    return prints


def read(bundle: str | Path, name: str):
    """One subset's row indices (int64) from a bundle."""
    import numpy as np

    with np.load(bundle, allow_pickle=False) as npz:
        return decode(npz[name])


if __name__ == "__main__":  # pragma: no cover - the one-off conversion
    for subset, digest in pack(sys.argv[1], sys.argv[2]).items():
        print(subset, digest)
