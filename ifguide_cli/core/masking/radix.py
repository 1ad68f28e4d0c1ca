"""τ of Alg. 1: the exact p-quantile of all (valid) token scores, without copying or sorting the tensor.

`numpy.quantile(scores.ravel(), p)` (linear method) needs a flat copy and a partition of the whole
tensor: for a billion-token score tensor that is gigabytes. Here the two order statistics the linear
interpolation needs are found by radix selection on the IEEE bit patterns, 16 bits per pass, with one
histogram per row chunk (2 passes for float32, 4 for float64). The first pass also counts NaN/inf for
free. The result is then interpolated with numpy's own formula, so it is bit-for-bit numpy's value.
"""

from __future__ import annotations

import numpy as np

from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.masking.arrays import CHUNK_ELEMENTS, as_2d, check_dtype, check_valid, nonfinite_error, row_chunks
from ifguide_cli.core.masking.row_blocks import Rows

_DIGIT_BITS = 16
_NDIGIT = 1 << _DIGIT_BITS


def _flat_values(scores: Rows, valid: Rows | None, r0: int, r1: int) -> np.ndarray:
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


def _locate(key_hist: np.ndarray, rank: int) -> tuple[int, int]:
    """(digit in value order holding the rank-th element, rank within that digit's bucket)."""
    cum = np.cumsum(key_hist)
    kd = int(np.searchsorted(cum, rank, side="right"))
    below = int(cum[kd - 1]) if kd > 0 else 0
    return kd, rank - below


def _digit_histograms(scores: Rows, valid: Rows | None, prefixes: list[int], shift_prefix: int,
                      chunk_elements: int, task=None) -> dict[int, np.ndarray]:
    """For each bit prefix (the digits chosen so far), the histogram of the next 16-bit digit of its elements."""
    udt = _uint_dtype(scores.dtype)
    docs, seq_len = scores.shape
    shift_digit = shift_prefix - _DIGIT_BITS
    hists = {p: np.zeros(_NDIGIT, dtype=np.int64) for p in prefixes}
    for r0, r1 in row_chunks(docs, seq_len, chunk_elements):
        u = _flat_values(scores, valid, r0, r1).view(udt)
        top = u >> udt.type(shift_prefix)
        for p in prefixes:
            sel = u[top == udt.type(p)]
            if sel.size:
                d = (sel >> udt.type(shift_digit)) & udt.type(_NDIGIT - 1) if shift_digit else sel & udt.type(_NDIGIT - 1)
                hists[p] += np.bincount(d.astype(np.intp, copy=False), minlength=_NDIGIT)
        if task is not None:
            task.advance((r1 - r0) * seq_len)
    return hists


def _select_ranks(scores: Rows, valid: Rows | None, ranks: list[int], first_hist: np.ndarray,
                  chunk_elements: int, task=None) -> dict[int, np.generic]:
    """Exact order statistics (0-based ranks in ascending order) by radix selection, one pass per digit."""
    dtype = scores.dtype
    bits = dtype.itemsize * 8
    # state per rank: raw prefix so far (python int), rank within the prefix's bucket
    state: dict[int, tuple[int, int]] = {}
    first_key_hist = _raw_to_key_hist(first_hist, None)
    for r in ranks:
        kd, within = _locate(first_key_hist, r)
        state[r] = (_key_to_raw_digit(kd, None), within)
    for level in range(1, bits // _DIGIT_BITS):
        shift_prefix = bits - _DIGIT_BITS * level
        hists = _digit_histograms(scores, valid, sorted({p for p, _ in state.values()}), shift_prefix, chunk_elements, task)
        new_state = {}
        for r, (p, rr) in state.items():
            negative = bool(p >> (bits - shift_prefix - 1))  # the sign bit is the prefix's top bit
            kd, within = _locate(_raw_to_key_hist(hists[p], negative), rr)
            new_state[r] = ((p << _DIGIT_BITS) | _key_to_raw_digit(kd, negative), within)
        state = new_state
    udt = _uint_dtype(dtype)
    return {r: np.array([p], dtype=udt).view(dtype)[0] for r, (p, _) in state.items()}


def _first_digit_histogram(scores: Rows, valid: Rows | None, chunk_elements: int, task=None) -> np.ndarray:
    """Histogram of the top 16 bits of every (valid) element: sign, exponent and the first mantissa bits."""
    dtype = scores.dtype
    udt = _uint_dtype(dtype)
    docs, seq_len = scores.shape
    hist = np.zeros(_NDIGIT, dtype=np.int64)
    words = dtype.itemsize // 2
    for r0, r1 in row_chunks(docs, seq_len, chunk_elements):
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


def quantile_and_count(scores: Rows, p: float, valid: Rows | None, chunk_elements: int,
                       task=None) -> tuple[np.generic, int]:
    """(τ, number of scores it was taken over); raises on NaN/inf and on an empty selection."""
    hist = _first_digit_histogram(scores, valid, chunk_elements, task)
    bad = int(hist[_nonfinite_digit_mask(scores.dtype)].sum())
    if bad:
        raise nonfinite_error(scores, valid, bad, chunk_elements)
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


def _numpy_lerp(low: np.generic, high: np.generic, t: float) -> np.generic:
    """numpy's `_lerp` (numpy/lib/_function_base_impl.py) on 0-d arrays, so the rounding is identical."""
    a = np.asarray(low)
    b = np.asarray(high)
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
    matrix = as_2d(check_dtype(np.asanyarray(scores)))
    counted = check_valid(valid, matrix.shape) if valid is not None else None
    return quantile_and_count(matrix, float(p), counted, chunk_elements)[0]
