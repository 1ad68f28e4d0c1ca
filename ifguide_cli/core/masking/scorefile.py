"""Score files: reading tensors of .safetensors / .npy files memory-mapped, and writing .safetensors.

The safetensors format is read directly (an 8-byte header length, a JSON header, raw little-endian
buffers) so a billion-token score tensor is memory-mapped instead of loaded, and BF16 tensors (which
numpy cannot represent) are widened chunk by chunk (`open_scores`: a block of rows at a time, as Alg. 1
reads them, so a whole float32 copy is never made). Writing streams each buffer to the file, or
pre-sizes the file (`preallocate_safetensors`) so that a stage can fill a tensor block by block through
a writable memory map (`open_tensor`) and never hold it whole, or joins tensors written to raw files as they
were made (`join_safetensors`).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np

from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.masking.arrays import CHUNK_ELEMENTS, check_finite, work_dtype
from ifguide_cli.core.masking.row_blocks import FileRows

_ST_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
    "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_, "U16": np.uint16,
}
SCORE_KEYS = ("scores", "all_modules")


def _safetensors_header(path: Path) -> tuple[dict, int]:
    try:
        with open(path, "rb") as fh:
            raw = fh.read(8)
            if len(raw) != 8:
                raise ValueError("file too short")
            (n,) = struct.unpack("<Q", raw)
            if n > 100_000_000:
                raise ValueError("header too large")
            header = json.loads(fh.read(n))
    except (OSError, ValueError) as exc:
        raise IfguideError(f"{path} is not a readable safetensors file ({exc})") from None
    return header, 8 + n


def safetensors_keys(path: str | Path) -> list[str]:
    """The tensor names of a .safetensors file (its header only is read)."""
    header, _ = _safetensors_header(Path(path))
    return [k for k in header if k != "__metadata__"]


def load_safetensors_array(path: str | Path, key: str, *, widen_bf16: bool = True) -> np.ndarray:
    """One tensor of a .safetensors file, memory-mapped where numpy can represent its dtype.

    BF16 becomes a float32 copy, or with `widen_bf16=False` a memory map of its raw uint16 words (widen a
    slice with `bf16_to_float32`)."""
    path = Path(path)
    header, data_start = _safetensors_header(path)
    if key not in header or key == "__metadata__":
        keys = ", ".join(k for k in header if k != "__metadata__") or "none"
        raise IfguideError(f"{path.name} has no tensor '{key}' (it holds: {keys})")
    info = header[key]
    dtype_name, shape, (begin, end) = info["dtype"], tuple(info["shape"]), info["data_offsets"]
    count = int(np.prod(shape, dtype=np.int64))
    if data_start + end > path.stat().st_size:
        raise IfguideError(f"{path}: tensor '{key}' is truncated (the file ends before its data)", hint="recreate the file")
    if dtype_name == "BF16" and widen_bf16:
        return _widen_bf16(path, data_start + begin, shape, count)
    if dtype_name == "BF16":
        dtype_name = "U16"
    if dtype_name not in _ST_DTYPES:
        raise IfguideError(f"{path.name}: tensor '{key}' has unsupported dtype {dtype_name}")
    dtype = np.dtype(_ST_DTYPES[dtype_name]).newbyteorder("<")
    if count == 0:
        return np.zeros(shape, dtype=dtype)
    if end - begin != count * dtype.itemsize:
        raise IfguideError(f"{path.name}: tensor '{key}' is truncated or corrupt")
    return np.memmap(path, dtype=dtype, mode="r", offset=data_start + begin, shape=shape)


def bf16_to_float32(raw: np.ndarray) -> np.ndarray:
    """BF16 words (uint16) as float32: exact, BF16 is the top half of a float32."""
    return (np.asarray(raw).astype(np.uint32) << 16).view(np.float32)


def _widen_bf16(path: Path, offset: int, shape: tuple[int, ...], count: int) -> np.ndarray:
    """A BF16 tensor as float32, converted chunk by chunk."""
    if count == 0:
        return np.zeros(shape, dtype=np.float32)
    raw = np.memmap(path, dtype=np.uint16, mode="r", offset=offset, shape=(count,))
    out = np.empty(count, dtype=np.float32)
    step = CHUNK_ELEMENTS
    for i in range(0, count, step):
        out[i:i + step] = bf16_to_float32(raw[i:i + step])
    return out.reshape(shape)


def load_scores(path: str | Path, key: str | None = None, *, check_finite_values: bool = True) -> np.ndarray:
    """A (docs, seq_len) score tensor from a file, memory-mapped when possible.

    - `.safetensors`: the tensor `key`, else `scores` (ifguide scores artifact), else
      `all_modules` (kronfluence's pairwise_scores.safetensors), else the file's only tensor.
    - `.npy`: memory-mapped (`mmap_mode='r'`).
    A leading query axis of size 1 ((1, docs, seq) from kronfluence) is squeezed.
    Raises IfguideError on a missing file/key, a bad shape, a non-float dtype or NaN/inf.
    """
    path = _score_file(path)
    arr = _score_matrix(path, _read_score_tensor(path, key))
    if check_finite_values and arr.dtype.kind == "f":
        check_finite(arr)
    return arr


def open_scores(path: str | Path, key: str | None = None) -> FileRows:
    """The tensor `load_scores` reads, as a view that reads a block of rows at a time (`row_blocks.FileRows`) in
    the dtype Alg. 1 works in: a bf16 file widened to float32 one block at a time, integers as float64, fp16
    and fp32 as stored. The file, key and shape are checked now; the values (NaN/inf) as the blocks are read."""
    path = _score_file(path)
    bf16 = False
    if path.suffix.lower() == ".safetensors":
        key = key if key is not None else _default_score_key(path)
        bf16 = _safetensors_header(path)[0].get(key, {}).get("dtype") == "BF16"

    def open_map() -> np.ndarray:
        return _score_matrix(path, _read_score_tensor(path, key, widen_bf16=False))

    stored = open_map()
    if bf16:
        return FileRows(open_map, stored.shape, np.dtype(np.float32), bf16_to_float32)
    return FileRows(open_map, stored.shape, work_dtype(stored.dtype))


def _score_file(path: str | Path) -> Path:
    """`path` as a Path, refused in one line when it is missing or a folder."""
    path = Path(path)
    if not path.exists():
        raise IfguideError(f"score file not found: {path}")
    if path.is_dir():
        raise IfguideError(f"{path} is a folder, not a score file",
                           hint="pass a scores artifact by id/name, or a .safetensors/.npy file")
    return path


def _read_score_tensor(path: Path, key: str | None, *, widen_bf16: bool = True) -> np.ndarray:
    """The score tensor of a .safetensors (see `load_scores` for the key) or .npy file, as stored (a bf16 one
    widened to float32 in memory, or with `widen_bf16=False` memory-mapped as its raw uint16 words)."""
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return load_safetensors_array(path, key if key is not None else _default_score_key(path), widen_bf16=widen_bf16)
    if suffix == ".npy":
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise IfguideError(f"{path} is not a readable .npy file ({exc})") from None
    raise IfguideError(f"unsupported score file type '{suffix or path.name}'",
                       hint="use .safetensors (key 'scores' or 'all_modules') or .npy")


def _default_score_key(path: Path) -> str:
    """`scores`, else `all_modules`, else the file's only tensor."""
    keys = safetensors_keys(path)
    key = next((k for k in SCORE_KEYS if k in keys), None)
    if key is not None:
        return key
    if len(keys) != 1:
        raise IfguideError(f"{path.name} holds {len(keys)} tensors ({', '.join(keys) or 'none'}); "
                           f"expected one named {' or '.join(SCORE_KEYS)}")
    return keys[0]


def _score_matrix(path: Path, arr: np.ndarray) -> np.ndarray:
    """The tensor as (docs, seq_len): kronfluence's query axis of size 1 squeezed; shape and dtype checked."""
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 3:
        raise IfguideError(
            f"{path.name} holds scores for {arr.shape[0]} queries (shape {tuple(arr.shape)}); "
            "expected one aggregated (differential) query: shape (1, docs, seq_len) or (docs, seq_len)")
    if arr.ndim != 2:
        raise IfguideError(f"{path.name}: scores must have shape (docs, seq_len) or (1, docs, seq_len); "
                           f"got {tuple(arr.shape)}")
    if arr.dtype.kind not in "fiub":
        raise IfguideError(f"{path.name}: scores must be numeric; got dtype {arr.dtype}")
    return arr


_NP_TO_ST = {np.dtype(v).name: k for k, v in _ST_DTYPES.items() if k != "U16"}
_ST_ITEMSIZE = {**{k: np.dtype(v).itemsize for k, v in _ST_DTYPES.items()}, "BF16": 2}


def _header(layout: dict[str, tuple[str, tuple[int, ...]]]) -> tuple[bytes, int]:
    """(the 8-byte length and JSON header of a .safetensors file holding the tensors `layout` names in its order,
    ({name: (safetensors dtype, shape)}), padded to 8 bytes as safetensors pads it; the size of their data)."""
    header: dict[str, Any] = {}
    offset = 0
    for name, (dtype_name, shape) in layout.items():
        nbytes = int(np.prod(shape, dtype=np.int64)) * _ST_ITEMSIZE[dtype_name]
        header[name] = {"dtype": dtype_name, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw, offset


def preallocate_safetensors(path: str | Path, layout: dict[str, tuple[str, tuple[int, ...]]],
                            data: dict[str, np.ndarray] | None = None) -> None:
    """A .safetensors file of the tensors `layout` names ({name: (safetensors dtype, shape)}), zero-filled (a
    sparse file: no disk is used until written), with the tensors of `data` written now."""
    header, size = _header(layout)
    with open(path, "wb") as fh:
        fh.write(header)
        fh.truncate(len(header) + size)
    write_tensors(path, data or {})


def write_tensors(path: str | Path, data: dict[str, np.ndarray]) -> None:
    """Write whole tensors of a pre-sized .safetensors file (`preallocate_safetensors`) in place."""
    for name, arr in data.items():
        if np.size(arr) == 0:
            continue  # nothing to write (and an empty tensor cannot be memory-mapped)
        out = open_tensor(path, name)
        out[...] = arr
        out.flush()
        del out


# safetensors' Dtype enum in its declaration order (safetensors/src/tensor.rs): its save_file writes the tensors
# sorted by dtype, last in this order first, then by name
_ST_ORDER = ("BOOL", "U8", "I8", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64", "I64")


def join_safetensors(path: str | Path, parts: dict[str, tuple[str, tuple[int, ...], Path]]) -> None:
    """A .safetensors file of tensors whose raw little-endian bytes were written to files beforehand ({name:
    (safetensors dtype, shape, raw file)}), copied in a block at a time, in the order safetensors' own save_file
    writes them: the file is byte for byte what save_file writes for the same tensors."""
    import shutil

    order = sorted(parts, key=lambda name: (-_ST_ORDER.index(parts[name][0]), name))
    header, size = _header({name: parts[name][:2] for name in order})
    with open(path, "wb") as out:
        out.write(header)
        for name in order:
            with open(parts[name][2], "rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)  # 1 MiB at a time: memory stays flat
        if out.tell() != len(header) + size:
            raise RuntimeError(f"{path}: the raw tensor files hold {out.tell() - len(header)} bytes, not {size}")


def open_tensor(path: str | Path, key: str) -> np.memmap:
    """A writable memory map of one tensor of a .safetensors file (BF16 as its raw uint16 words)."""
    path = Path(path)
    header, data_start = _safetensors_header(path)
    info = header[key]
    dtype = np.dtype(np.uint16 if info["dtype"] == "BF16" else _ST_DTYPES[info["dtype"]]).newbyteorder("<")
    return np.memmap(path, dtype=dtype, mode="r+", offset=data_start + info["data_offsets"][0], shape=tuple(info["shape"]))


def save_safetensors(path: str | Path, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> None:
    """Write numpy arrays as a .safetensors file, streaming each buffer (no in-memory copy of the whole file)."""
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    arrays = {}
    for name, arr in tensors.items():
        arr = np.asarray(arr)
        dtype = arr.dtype.newbyteorder("=") if not arr.dtype.isnative else arr.dtype
        if dtype.name not in _NP_TO_ST:
            raise IfguideError(f"cannot store dtype {arr.dtype} in safetensors")
        arr = np.ascontiguousarray(arr, dtype=dtype.newbyteorder("<"))
        header[name] = {"dtype": _NP_TO_ST[dtype.name], "shape": list(arr.shape), "data_offsets": [offset, offset + arr.nbytes]}
        offset += arr.nbytes
        arrays[name] = arr
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)))
        fh.write(raw)
        for arr in arrays.values():
            flat = arr.reshape(-1)
            step = max(1, (64 << 20) // max(1, arr.itemsize))
            for i in range(0, flat.size, step):
                fh.write(flat[i:i + step].tobytes())
