"""Toxic-token selection (IF-Guide, paper Alg. 1), vectorised and chunked for billion-token score tensors.

Semantics — exactly those of the reference script's `build_toxic_token_mask`
(the per-token Python loop), with the deviations listed at the end:

1. τ = the p-quantile of all token scores, linearly interpolated as
   `numpy.quantile(scores.ravel(), p)` computes it by default (same dtype, same
   rounding). A token is *above threshold* when its score is strictly > τ.
2. Per document i: sparsity s_i = #tokens above τ, strength f_i = sum of their
   scores. Both are min-max normalised over documents; when max == min every
   normalised value is 0.
3. Rank key h_i = 2·s'_i·f'_i / (s'_i + f'_i), 0 where s'_i + f'_i == 0. The
   ranking is all documents by h descending; ties keep the lower index first.
4. Greedy walk: documents in ranking order, inside a document its
   above-threshold tokens left to right. Each token adds the window
   [t-w, t+w] ∩ [0, seq_len) of its document; only tokens not yet marked count.
   When the next token's new tokens would take the total over the budget L the
   walk ends (it does not skip to a smaller document): tokens marked before it,
   including earlier ones of the same document, stay marked.

Optional `valid` (bool, same shape; e.g. the attention mask): invalid positions
are left out of the quantile, are never above threshold, and are never marked,
not even as context (so padding never spends budget).

Deviations from the reference script (all deliberate, all documented in the
README): it normalises with `(x - min) / (max - min + 1e-6)` and
`2ab / (a + b + 1e-6)` in float32, which makes the ranking depend on the scale
of the scores (a strength range below ~1e-4 gets squashed); here normalisation
is exact in float64 with the max == min guard. Strength is summed in float64
(the reference sums in float32). The reference's torch argsort is not stable;
here ties rank by lower document index.

How it is vectorised (no per-token Python loop, O(chunk) extra memory):
- τ: an exact radix selection on the IEEE bit patterns (16-bit digits,
  histograms per chunk: 2 passes for float32), then numpy's own linear
  interpolation formula. The first pass also detects NaN/inf for free.
- One pass over documents in chunks computes s, f and the dilated
  above-threshold set (written straight into the output mask) and its size
  c_i per document. Documents never share tokens, so a document fully walked
  adds exactly c_i new tokens; a cumulative sum over the ranking finds the
  document where the budget runs out. Inside that document the tokens marked
  after its k-th above-threshold token t_k are exactly the dilated set cut at
  t_k + w (later windows start right of t_k - w), so a cumulative sum along
  the row finds the stopping token too.
Peak memory: the scores, the output mask (1/4 of a float32 score tensor), and
per-chunk temporaries (~32 bytes × chunk elements).
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .data import file_identity
from .errors import IfguideError
from .progress import NULL

# Elements per chunk of the score tensor processed at once (~16 MB of float32).
CHUNK_ELEMENTS = 1 << 22
_DIGIT_BITS = 16
_NDIGIT = 1 << _DIGIT_BITS


@dataclass(frozen=True)
class MaskConfig:
    """Parameters of Alg. 1: quantile p, context window w, token budget L."""

    threshold: float = 0.99
    window: int = 1
    max_tokens: int = 20_000_000

    def __post_init__(self) -> None:
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float)) \
                or not math.isfinite(self.threshold) or not 0.0 <= self.threshold <= 1.0:
            raise IfguideError(f"--threshold is a quantile and must be in [0, 1]; got {self.threshold}", exit_code=2)
        for name, value in (("window", self.window), ("max-tokens", self.max_tokens)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise IfguideError(f"--{name} must be a non-negative integer; got {value}", exit_code=2)
        object.__setattr__(self, "threshold", float(self.threshold))
        object.__setattr__(self, "window", int(self.window))
        object.__setattr__(self, "max_tokens", int(self.max_tokens))

    def to_dict(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "window": self.window, "max_tokens": self.max_tokens}


@dataclass
class MaskResult:
    """The selection: the mask, the document ranking and the per-document statistics."""

    mask: np.ndarray  # bool (docs, seq_len): tokens to penalise
    ranking: np.ndarray  # int64 (docs,): document indices, best first (by harmonic)
    threshold_value: float  # τ
    tokens_selected: int
    documents_selected: int  # documents with at least one marked token
    budget_used: float  # tokens_selected / max_tokens (0 when the budget is 0)
    sparsity: np.ndarray  # int64 (docs,): s_i, tokens above τ
    strength: np.ndarray  # float64 (docs,): f_i, sum of their scores
    harmonic: np.ndarray  # float64 (docs,): h_i, the rank key
    candidate_counts: np.ndarray  # int64 (docs,): tokens the document adds if walked in full (dilated)
    selected_counts: np.ndarray  # int64 (docs,): tokens actually marked
    stopped_at_rank: int | None  # rank position where the budget ended the walk; None if it never did
    config: MaskConfig = field(default_factory=MaskConfig)
    num_scores: int = 0  # token scores the quantile was taken over
    tokens_above: int = 0  # sum of sparsity

    def summary(self) -> dict[str, Any]:
        docs, seq_len = self.mask.shape
        return {
            "threshold": self.config.threshold,
            "window": self.config.window,
            "max_tokens": self.config.max_tokens,
            "threshold_value": self.threshold_value,
            "docs": int(docs),
            "seq_len": int(seq_len),
            "num_scores": int(self.num_scores),
            "tokens_above_threshold": int(self.tokens_above),
            "tokens_selected": int(self.tokens_selected),
            "documents_selected": int(self.documents_selected),
            "budget_used": float(self.budget_used),
            "budget_exhausted": self.stopped_at_rank is not None,
            "stopped_at_rank": self.stopped_at_rank,
        }


# --------------------------------------------------------------------------- quantile


def _row_chunks(n_rows: int, row_len: int, chunk_elements: int):
    rows = max(1, chunk_elements // max(1, row_len))
    for r0 in range(0, n_rows, rows):
        yield r0, min(n_rows, r0 + rows)


def _flat_values(scores: np.ndarray, valid: np.ndarray | None, r0: int, r1: int) -> np.ndarray:
    block = np.ascontiguousarray(scores[r0:r1])
    if valid is not None:
        return block[np.asarray(valid[r0:r1], dtype=bool)]
    return block.reshape(-1)


def _uint_dtype(dtype: np.dtype) -> np.dtype:
    return np.dtype(f"u{dtype.itemsize}")


def _nonfinite_digit_mask(dtype: np.dtype) -> np.ndarray:
    """Top-16-bit patterns whose exponent is all ones (NaN or ±inf)."""
    digits = np.arange(_NDIGIT, dtype=np.uint32)
    exp_mask = {2: 0x7C00, 4: 0x7F80, 8: 0x7FF0}[dtype.itemsize]
    return (digits & exp_mask) == exp_mask


def _raw_to_key_hist(raw_hist: np.ndarray, negative: bool | None) -> np.ndarray:
    """Reorder a histogram over raw digits into value order.

    Top digit (negative is None): negative numbers (sign bit set) come first, in
    reverse raw order. Lower digits: reversed when the number is negative.
    """
    if negative is None:
        return np.concatenate([raw_hist[_NDIGIT // 2:][::-1], raw_hist[: _NDIGIT // 2]])
    return raw_hist[::-1] if negative else raw_hist


def _key_to_raw_digit(key_digit: int, negative: bool | None) -> int:
    if negative is None:
        return (_NDIGIT - 1 - key_digit) if key_digit < _NDIGIT // 2 else key_digit - _NDIGIT // 2
    return _NDIGIT - 1 - key_digit if negative else key_digit


def _select_ranks(scores: np.ndarray, valid: np.ndarray | None, ranks: list[int], first_hist: np.ndarray,
                  chunk_elements: int, task=None) -> dict[int, np.generic]:
    """Exact order statistics (0-based ranks in ascending order) by radix selection, one pass per digit."""
    dtype = scores.dtype
    bits = dtype.itemsize * 8
    udt = _uint_dtype(dtype)
    docs, seq_len = scores.shape
    # state per rank: raw prefix so far (python int), rank within the prefix's bucket
    state: dict[int, tuple[int, int]] = {}
    key_hist = _raw_to_key_hist(first_hist, None)
    cum = np.cumsum(key_hist)
    for r in ranks:
        kd = int(np.searchsorted(cum, r, side="right"))
        below = int(cum[kd - 1]) if kd > 0 else 0
        state[r] = (_key_to_raw_digit(kd, None), r - below)
    for level in range(1, bits // _DIGIT_BITS):
        shift_prefix = bits - _DIGIT_BITS * level
        shift_digit = shift_prefix - _DIGIT_BITS
        prefixes = sorted({p for p, _ in state.values()})
        hists = {p: np.zeros(_NDIGIT, dtype=np.int64) for p in prefixes}
        for r0, r1 in _row_chunks(docs, seq_len, chunk_elements):
            u = _flat_values(scores, valid, r0, r1).view(udt)
            top = u >> udt.type(shift_prefix)
            for p in prefixes:
                sel = u[top == udt.type(p)]
                if sel.size:
                    d = (sel >> udt.type(shift_digit)) & udt.type(_NDIGIT - 1) if shift_digit else sel & udt.type(_NDIGIT - 1)
                    hists[p] += np.bincount(d.astype(np.intp, copy=False), minlength=_NDIGIT)
            if task is not None:
                task.advance((r1 - r0) * seq_len)
        new_state = {}
        for r, (p, rr) in state.items():
            negative = bool(p >> (bits - shift_prefix - 1))  # the sign bit is the prefix's top bit
            cum = np.cumsum(_raw_to_key_hist(hists[p], negative))
            kd = int(np.searchsorted(cum, rr, side="right"))
            below = int(cum[kd - 1]) if kd > 0 else 0
            new_state[r] = ((p << _DIGIT_BITS) | _key_to_raw_digit(kd, negative), rr - below)
        state = new_state
    out = {}
    for r, (p, _) in state.items():
        out[r] = np.array([p], dtype=udt).view(dtype)[0]
    return out


def _first_digit_histogram(scores: np.ndarray, valid: np.ndarray | None, chunk_elements: int, task=None) -> np.ndarray:
    dtype = scores.dtype
    udt = _uint_dtype(dtype)
    docs, seq_len = scores.shape
    hist = np.zeros(_NDIGIT, dtype=np.int64)
    words = dtype.itemsize // 2
    for r0, r1 in _row_chunks(docs, seq_len, chunk_elements):
        flat = _flat_values(scores, valid, r0, r1)
        if np.little_endian:
            # the top 16 bits of each element, as a strided uint16 view (no shift temporary)
            top = flat.view(np.uint16)[words - 1 :: words]
        else:
            top = (flat.view(udt) >> udt.type(udt.itemsize * 8 - _DIGIT_BITS)).astype(np.intp)
        hist += np.bincount(top, minlength=_NDIGIT)
        if task is not None:
            task.advance((r1 - r0) * seq_len)
    return hist


def _check_dtype(scores: np.ndarray) -> np.ndarray:
    if scores.dtype.kind == "f" and scores.dtype.itemsize in (2, 4, 8):
        if not scores.dtype.isnative:
            return scores.astype(scores.dtype.newbyteorder("="))
        return scores
    if scores.dtype.kind in "iub":
        return scores.astype(np.float64)
    raise IfguideError(f"scores must be a float tensor; got dtype {scores.dtype}")


def _nonfinite_error(scores: np.ndarray, valid: np.ndarray | None, count: int, chunk_elements: int) -> IfguideError:
    docs, seq_len = scores.shape
    where = ""
    for r0, r1 in _row_chunks(docs, seq_len, chunk_elements):
        bad = ~np.isfinite(np.asarray(scores[r0:r1]))
        if valid is not None:
            bad &= np.asarray(valid[r0:r1], dtype=bool)
        if bad.any():
            i, t = np.argwhere(bad)[0]
            where = f"; first at document {r0 + int(i)}, position {int(t)} ({scores[r0 + int(i), int(t)]})"
            break
    return IfguideError(f"scores contain {count} non-finite value(s) (NaN or inf){where}",
                        hint="influence scores must be finite; recompute them (e.g. with a larger damping factor)")


def _quantile_and_count(scores: np.ndarray, p: float, valid: np.ndarray | None, chunk_elements: int,
                        task=None) -> tuple[np.generic, int]:
    hist = _first_digit_histogram(scores, valid, chunk_elements, task)
    bad = int(hist[_nonfinite_digit_mask(scores.dtype)].sum())
    if bad:
        raise _nonfinite_error(scores, valid, bad, chunk_elements)
    n = int(hist.sum())
    if n == 0:
        raise IfguideError("no token scores to take a quantile over (empty tensor, or no valid positions)")
    # numpy.quantile, method='linear', q a Python float: virtual index (n-1)·q in float64,
    # gamma as a Python float (weak promotion), lerp in the array's dtype.
    virtual = (n - 1) * np.float64(p)
    if virtual >= n - 1:
        lo = hi = n - 1
    else:
        lo = int(np.floor(virtual))
        hi = lo + 1
    gamma = float(virtual - np.float64(lo))
    values = _select_ranks(scores, valid, sorted({lo, hi}), hist, chunk_elements, task)
    return _numpy_lerp(values[lo], values[hi], gamma), n


def _numpy_lerp(a: np.generic, b: np.generic, t: float) -> np.generic:
    """numpy's `_lerp` (numpy/lib/_function_base_impl.py) on 0-d arrays, so the rounding is identical."""
    a = np.asarray(a)
    b = np.asarray(b)
    diff_b_a = b - a
    out = np.add(a, diff_b_a * t)
    if t >= 0.5:
        out = np.asarray(np.subtract(b, diff_b_a * (1 - t)), dtype=out.dtype)
    return out[()]


def quantile(scores: np.ndarray, p: float, valid: np.ndarray | None = None,
             chunk_elements: int = CHUNK_ELEMENTS) -> np.generic:
    """`np.quantile(scores[valid], p)` (linear), exact, without copying or sorting the tensor.

    Works on memory-mapped arrays of any size; raises IfguideError on NaN/inf.
    """
    scores = _as_2d(_check_dtype(np.asanyarray(scores)))
    valid = _check_valid(valid, scores.shape) if valid is not None else None
    return _quantile_and_count(scores, float(p), valid, chunk_elements)[0]


def _as_2d(scores: np.ndarray) -> np.ndarray:
    if scores.ndim == 1:
        return scores.reshape(1, -1)
    if scores.ndim != 2:
        raise IfguideError(f"scores must be 2-D (docs, seq_len); got shape {tuple(scores.shape)}")
    return scores


def _check_valid(valid: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    valid = np.asarray(valid)
    if valid.shape != tuple(shape):
        raise IfguideError(f"valid mask shape {tuple(valid.shape)} does not match scores {tuple(shape)}")
    return valid if valid.dtype == bool else valid.astype(bool)


# --------------------------------------------------------------------------- selection


def _dilate(above: np.ndarray, w: int) -> np.ndarray:
    """Each True position spread to [t-w, t+w] within its row (clipped)."""
    if w == 0:
        return above.copy()
    seq_len = above.shape[1]
    if w <= 8:
        out = above.copy()
        for k in range(1, min(w, seq_len - 1) + 1):
            out[:, k:] |= above[:, :-k]
            out[:, :-k] |= above[:, k:]
        return out
    csum = np.zeros((above.shape[0], seq_len + 1), dtype=np.int32)
    np.cumsum(above, axis=1, dtype=np.int32, out=csum[:, 1:])
    pos = np.arange(seq_len)
    hi = np.minimum(pos + w, seq_len - 1) + 1
    lo = np.maximum(pos - w, 0)
    return (csum[:, hi] - csum[:, lo]) > 0


def _minmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    if x.size == 0:
        return x
    lo, hi = x.min(), x.max()
    if hi > lo:
        return (x - lo) / (hi - lo)
    return np.zeros_like(x)


def harmonic_rank(sparsity: np.ndarray, strength: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(h, ranking): the min-max normalised harmonic mean and the stable descending order."""
    s = _minmax(sparsity)
    f = _minmax(strength)
    denom = s + f
    h = np.zeros_like(s)
    nz = denom > 0
    h[nz] = (2.0 * s[nz] * f[nz]) / denom[nz]
    ranking = np.argsort(-h, kind="stable").astype(np.int64)
    return h, ranking


def select_toxic_tokens(scores: np.ndarray, config: MaskConfig | None = None, valid: np.ndarray | None = None,
                        *, reporter=NULL, chunk_elements: int = CHUNK_ELEMENTS) -> MaskResult:
    """Alg. 1 on a (docs, seq_len) score tensor (in memory or memory-mapped). See the module docstring."""
    config = config or MaskConfig()
    scores = _check_dtype(scores)
    scores = _as_2d(scores)
    if valid is not None:
        valid = _check_valid(valid, scores.shape)
    docs, seq_len = scores.shape
    total = docs * seq_len
    w, budget = config.window, config.max_tokens
    passes = 1 + scores.dtype.itemsize // 2  # quantile digit passes + the document pass

    with reporter.task("Selecting toxic tokens", total=total * passes) as task:
        tau, n = _quantile_and_count(scores, config.threshold, valid, chunk_elements, task)
        task.set(completed=total * (passes - 1), info=f"τ = {float(tau):.4g}")

        mask = np.zeros((docs, seq_len), dtype=bool)
        sparsity = np.zeros(docs, dtype=np.int64)
        strength = np.zeros(docs, dtype=np.float64)
        candidate = np.zeros(docs, dtype=np.int64)
        for r0, r1 in _row_chunks(docs, seq_len, chunk_elements):
            block = np.asarray(scores[r0:r1])
            above = block > tau
            if valid is not None:
                vblock = np.asarray(valid[r0:r1])
                above &= vblock
            counts = np.count_nonzero(above, axis=1)
            sparsity[r0:r1] = counts
            vals = block[above].astype(np.float64)  # row-major: each document's values contiguous
            nonempty = np.flatnonzero(counts)
            if nonempty.size:
                starts = np.concatenate([[0], np.cumsum(counts)[:-1]])[nonempty]
                strength[r0 + nonempty] = np.add.reduceat(vals, starts)
            dil = _dilate(above, w)
            if valid is not None:
                dil &= vblock
            mask[r0:r1] = dil
            candidate[r0:r1] = np.count_nonzero(dil, axis=1)
            task.advance((r1 - r0) * seq_len)

        harmonic, ranking = harmonic_rank(sparsity, strength)

        # The walk: whole documents while the running total fits the budget.
        cum = np.cumsum(candidate[ranking])
        stop = int(np.searchsorted(cum, budget, side="right"))  # first rank position that overflows
        selected = np.zeros(docs, dtype=np.int64)
        stopped_at_rank: int | None = None
        if stop < docs:
            stopped_at_rank = stop
            used_before = int(cum[stop - 1]) if stop > 0 else 0
            j = int(ranking[stop])
            row = mask[j]
            above_j = np.asarray(scores[j]) > tau
            if valid is not None:
                above_j &= np.asarray(valid[j])
            centers = np.flatnonzero(above_j)
            row_cum = np.cumsum(row)
            union_after = row_cum[np.minimum(centers + w, seq_len - 1)]  # marked in doc j after each center
            k = int(np.searchsorted(union_after, budget - used_before, side="right"))  # first overflowing center
            if k == 0:
                row[:] = False
            else:
                row[min(seq_len, int(centers[k - 1]) + w + 1):] = False
            selected[j] = int(np.count_nonzero(row))
            # every document ranked after the stop is not marked
            rest = ranking[stop + 1:]
            if rest.size:
                mask[np.sort(rest)] = False
        walked = ranking[:stop]
        selected[walked] = candidate[walked]

    tokens_selected = int(selected.sum())
    return MaskResult(
        mask=mask,
        ranking=ranking,
        threshold_value=float(tau),
        tokens_selected=tokens_selected,
        documents_selected=int(np.count_nonzero(selected)),
        budget_used=(tokens_selected / budget) if budget > 0 else 0.0,
        sparsity=sparsity,
        strength=strength,
        harmonic=harmonic,
        candidate_counts=candidate,
        selected_counts=selected,
        stopped_at_rank=stopped_at_rank,
        config=config,
        num_scores=n,
        tokens_above=int(sparsity.sum()),
    )


# --------------------------------------------------------------------------- loading

_ST_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
    "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
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
    header, _ = _safetensors_header(Path(path))
    return [k for k in header if k != "__metadata__"]


def load_safetensors_array(path: str | Path, key: str) -> np.ndarray:
    """One tensor of a .safetensors file, memory-mapped where numpy can represent its dtype (BF16 → float32 copy)."""
    path = Path(path)
    header, data_start = _safetensors_header(path)
    if key not in header or key == "__metadata__":
        keys = ", ".join(k for k in header if k != "__metadata__") or "none"
        raise IfguideError(f"{path.name} has no tensor '{key}' (it holds: {keys})")
    info = header[key]
    dtype_name, shape, (begin, end) = info["dtype"], tuple(info["shape"]), info["data_offsets"]
    if dtype_name == "BF16":
        count = int(np.prod(shape, dtype=np.int64))
        if count == 0:
            return np.zeros(shape, dtype=np.float32)
        raw = np.memmap(path, dtype=np.uint16, mode="r", offset=data_start + begin, shape=(count,))
        out = np.empty(count, dtype=np.float32)
        step = CHUNK_ELEMENTS
        for i in range(0, count, step):
            out[i:i + step] = (raw[i:i + step].astype(np.uint32) << 16).view(np.float32)
        return out.reshape(shape)
    if dtype_name not in _ST_DTYPES:
        raise IfguideError(f"{path.name}: tensor '{key}' has unsupported dtype {dtype_name}")
    dtype = np.dtype(_ST_DTYPES[dtype_name]).newbyteorder("<")
    if int(np.prod(shape, dtype=np.int64)) == 0:
        return np.zeros(shape, dtype=dtype)
    if end - begin != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
        raise IfguideError(f"{path.name}: tensor '{key}' is truncated or corrupt")
    return np.memmap(path, dtype=dtype, mode="r", offset=data_start + begin, shape=shape)


def check_finite(scores: np.ndarray, valid: np.ndarray | None = None, chunk_elements: int = CHUNK_ELEMENTS) -> None:
    """Raise IfguideError naming the first NaN/inf (a chunked scan; memory-mapped arrays stay on disk)."""
    scores = _as_2d(scores)
    docs, seq_len = scores.shape
    bad = 0
    for r0, r1 in _row_chunks(docs, seq_len, chunk_elements):
        block = ~np.isfinite(np.asarray(scores[r0:r1]))
        if valid is not None:
            block &= np.asarray(valid[r0:r1], dtype=bool)
        bad += int(np.count_nonzero(block))
    if bad:
        raise _nonfinite_error(scores, valid, bad, chunk_elements)


def load_scores(path: str | Path, key: str | None = None, *, check_finite_values: bool = True) -> np.ndarray:
    """A (docs, seq_len) score tensor from a file, memory-mapped when possible.

    - `.safetensors`: the tensor `key`, else `scores` (ifguide scores artifact), else
      `all_modules` (kronfluence's pairwise_scores.safetensors), else the file's only tensor.
    - `.npy`: memory-mapped (`mmap_mode='r'`).
    A leading query axis of size 1 ((1, docs, seq) from kronfluence) is squeezed.
    Raises IfguideError on a missing file/key, a bad shape, a non-float dtype or NaN/inf.
    """
    path = Path(path)
    if not path.exists():
        raise IfguideError(f"score file not found: {path}")
    if path.is_dir():
        raise IfguideError(f"{path} is a folder, not a score file",
                           hint="pass a scores artifact by id/name, or a .safetensors/.npy file")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        keys = safetensors_keys(path)
        if key is None:
            key = next((k for k in SCORE_KEYS if k in keys), None)
            if key is None:
                if len(keys) != 1:
                    raise IfguideError(
                        f"{path.name} holds {len(keys)} tensors ({', '.join(keys) or 'none'}); "
                        f"expected one named {' or '.join(SCORE_KEYS)}")
                key = keys[0]
        arr = load_safetensors_array(path, key)
    elif suffix == ".npy":
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise IfguideError(f"{path} is not a readable .npy file ({exc})") from None
    else:
        raise IfguideError(f"unsupported score file type '{suffix or path.name}'",
                           hint="use .safetensors (key 'scores' or 'all_modules') or .npy")
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        if arr.ndim == 3:
            raise IfguideError(
                f"{path.name} holds scores for {arr.shape[0]} queries (shape {tuple(arr.shape)}); "
                "expected one aggregated (differential) query: shape (1, docs, seq_len) or (docs, seq_len)")
        raise IfguideError(f"{path.name}: scores must have shape (docs, seq_len) or (1, docs, seq_len); "
                           f"got {tuple(arr.shape)}")
    if arr.dtype.kind not in "fiub":
        raise IfguideError(f"{path.name}: scores must be numeric; got dtype {arr.dtype}")
    if check_finite_values and arr.dtype.kind == "f":
        check_finite(arr)
    return arr


_NP_TO_ST = {np.dtype(v).name: k for k, v in _ST_DTYPES.items()}


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


# --------------------------------------------------------------------------- the `mask` stage (workspace artifact)

MASK_FILE = "mask.safetensors"  # keys: mask, ranking, sparsity, strength, harmonic, selected
SCORES_FILE = "scores.safetensors"
CORPUS_FILE = "input_ids.safetensors"


@dataclass
class MaskSource:
    """Where a selection's scores (and, when known, the token data) come from."""

    scores: np.ndarray
    scores_art: Any | None  # the `scores` artifact, or None for a plain file
    scores_file: Path
    dataset: Any | None  # the `datasets` artifact the scores index, if known
    valid: np.ndarray | None


def dataset_arrays(dataset) -> dict[str, np.ndarray]:
    """The dataset artifact's token tensors, memory-mapped: input_ids, attention_mask (+ planted_toxic)."""
    path = dataset.file(CORPUS_FILE)
    keys = safetensors_keys(path)
    return {k: load_safetensors_array(path, k) for k in ("input_ids", "attention_mask", "planted_toxic") if k in keys}


def _as_bool_view(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == bool:
        return arr
    if arr.dtype == np.uint8:
        return arr.view(bool)  # 0/1 bytes: no copy
    return arr != 0


def resolve_mask_source(ws, scores_ref: str, data_ref: str | None = None, key: str | None = None,
                        use_attention_mask: bool = True) -> MaskSource:
    """A scores artifact (id, name, `latest`) or a score file; the dataset from the artifact or `data_ref`."""
    path = Path(scores_ref).expanduser()
    scores_art = None
    if path.is_file():
        scores_file = path
        scores = load_scores(path, key, check_finite_values=False)
    else:
        from .errors import ArtifactNotFound

        try:
            scores_art = ws.resolve(scores_ref, "scores")
        except ArtifactNotFound:
            if path.suffix.lower() in (".safetensors", ".npy") or "/" in scores_ref:
                raise IfguideError(f"score file not found: {path}") from None
            raise
        scores_file = scores_art.file(SCORES_FILE)
        scores = load_scores(scores_file, key, check_finite_values=False)
    dataset = None
    recorded = scores_art.config.get("dataset") if scores_art is not None else None
    if data_ref is not None:
        dataset = ws.resolve(data_ref, "datasets")
        if recorded and recorded != dataset.id:
            raise IfguideError(f"scores {scores_art.id} were computed on dataset {recorded}, not {dataset.id}",
                               hint="leave out --data (the scores artifact knows its dataset)", exit_code=2)
    elif recorded:
        dataset = ws.by_id(recorded)
        if dataset is None:
            raise IfguideError(f"dataset {recorded} of scores {scores_art.id} is no longer in the workspace",
                               hint="recreate it, or pass the score file itself without a dataset")
    valid = None
    if dataset is not None:
        arrays = dataset_arrays(dataset)
        shape = tuple(arrays["input_ids"].shape)
        if shape != tuple(scores.shape):
            raise IfguideError(f"scores have shape {tuple(scores.shape)} but dataset {dataset.id} has {shape} (docs × seq_len)",
                               hint="the scores must be computed on this dataset, same order and --seq-len", exit_code=2)
        if use_attention_mask and "attention_mask" in arrays:
            valid = _as_bool_view(arrays["attention_mask"])
    return MaskSource(scores, scores_art, scores_file, dataset, valid)


def planted_precision(ranking: np.ndarray, planted: np.ndarray) -> dict[str, Any]:
    """Precision@k of the ranking against planted toxic documents (k = number planted)."""
    planted = np.asarray(planted).astype(bool)
    k = int(planted.sum())
    if k == 0:
        return {}
    return {"planted_toxic_documents": k, "planted_precision_at_k": float(planted[ranking[:k]].mean())}


def create_mask_artifact(ws, scores_ref: str, config: MaskConfig, *, data_ref: str | None = None, key: str | None = None,
                         all_positions: bool = False, name: str | None = None, force: bool = False, reporter=NULL):
    """The `mask` stage: run Alg. 1 on a scores artifact or file and store a `masks` artifact. Returns (artifact, reused)."""
    src = resolve_mask_source(ws, scores_ref, data_ref, key, use_attention_mask=not all_positions)
    stage_config = {
        **config.to_dict(),
        "scores": src.scores_art.id if src.scores_art is not None else None,
        "scores_file": None if src.scores_art is not None else file_identity(src.scores_file),
        "scores_key": key,
        "dataset": src.dataset.id if src.dataset is not None else None,
        "positions": "attention_mask" if src.valid is not None else "all",
        "algorithm": "IF-Guide Alg. 1 (ifguide masking v1)",
    }
    parents = [src.scores_art.id] if src.scores_art is not None else ([src.dataset.id] if src.dataset is not None else [])

    def build(ctx):
        with ctx.timed("select"):
            res = select_toxic_tokens(src.scores, config, src.valid, reporter=reporter)
        with ctx.timed("write"):
            save_safetensors(ctx.staging / MASK_FILE, {
                "mask": res.mask, "ranking": res.ranking, "sparsity": res.sparsity, "strength": res.strength,
                "harmonic": res.harmonic, "selected": res.selected_counts})
        summary = res.summary()
        summary["dataset"] = stage_config["dataset"]
        summary["scores"] = stage_config["scores"] or str(src.scores_file)
        if src.dataset is not None:
            arrays = dataset_arrays(src.dataset)
            if "planted_toxic" in arrays:
                summary.update(planted_precision(res.ranking, np.asarray(arrays["planted_toxic"])))
        return summary

    return ws.create("masks", stage_config, parents, build, name=name, force=force)
