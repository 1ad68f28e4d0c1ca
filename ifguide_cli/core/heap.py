"""Keep an influence pass's resident memory at what it uses: large blocks mapped, freed pages returned (glibc).

A batch of an influence pass allocates hundreds of MB of short-lived CPU tensors (logits, activations,
per-token products) and keeps a few small ones (its scores). Two glibc behaviours made the process's peak
resident memory grow with the number of batches, that is with the corpus:

- glibc keeps much of what is freed in its heap (free chunks among live ones do not shrink it): measured on
  the tiny model (CPU, 72-token rows, 227-row batches), about 15 MB per batch, ~1 KB per scored token, which
  made `scores` need 5.1 GB at 40,000 documents. `malloc_trim(0)` after each batch (`release_free_memory`)
  hands the free pages inside the heap back (glibc ≥ 2.8 releases them with MADV_DONTNEED): resident memory
  at the end of each batch is flat (1,418–1,420 MB over the first 12 batches of 6,000 documents, against
  1,634 MB after 2 batches rising to 2,060 MB after 26 without it).
- Inside a batch, glibc's *dynamic* mmap threshold puts the big tensors in the heap too (once a mapped block
  is freed the threshold rises to its size, up to 32 MB), among the small tensors that stay alive (each
  batch's scores). The heap fragments, a batch can reuse less of what the batch before freed, and the
  peak inside a batch drifted upwards batch after batch: 1,618–1,671 MB over the 5 batches of 1,000
  documents, 1,602–1,810 MB over the 36 of 8,000 (~270 B per scored token; VmHWM sampled per batch). A fixed
  threshold (`map_large_allocations`: 128 KiB, glibc's default starting value, never raised) gives every
  large tensor its own mapping, returned to the OS when it is freed: the peak per batch is then flat
  (1,475–1,481 MB over the 36 batches) and lower.

On other C libraries (macOS, musl) both are no-ops.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

M_MMAP_THRESHOLD = -3  # mallopt's parameter number (glibc malloc.h)
LARGE_ALLOCATION = 1 << 17  # bytes: blocks this large get their own mapping (glibc's default threshold, fixed)
USER_THRESHOLD = "MALLOC_MMAP_THRESHOLD_"  # glibc's environment variable: a threshold the user chose wins


@functools.cache
def _libc():
    """The C library, or None where it cannot be loaded."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def _glibc_function(name: str):
    """glibc's function `name`, or None where the C library has none."""
    lib = _libc()
    return getattr(lib, name, None) if lib is not None else None


def release_free_memory() -> None:
    """Return the heap's free pages to the OS (glibc), so resident memory follows what is actually in use."""
    trim = _glibc_function("malloc_trim")
    if trim is not None:
        trim(0)


def map_large_allocations() -> bool:
    """Give every allocation of `LARGE_ALLOCATION` bytes or more its own mapping for the rest of the process (glibc),
    so that a freed large tensor leaves resident memory at once. Returns whether the setting took effect.

    Setting the threshold also turns off glibc's dynamic raising of it; it cannot be turned back on, so it stays
    for the process (a pipeline run's later stages too: they allocate the same way, only with more mappings).
    The price is page faults (each large tensor is mapped fresh: ~+20% CPU time of a CPU pass on the tiny model);
    a threshold the user set with glibc's own `MALLOC_MMAP_THRESHOLD_` is kept (e.g. 33554432 trades the bounded
    peak for that time)."""
    mallopt = _glibc_function("mallopt")
    if mallopt is None or os.environ.get(USER_THRESHOLD):
        return False
    return mallopt(M_MMAP_THRESHOLD, LARGE_ALLOCATION) == 1
