"""Resumable stages: partitions and a killed run's leftovers.

kronfluence writes one file per finished data partition into the artifact's staging folder and skips
the ones that exist, so a killed run resumes from its finished partitions. A file half-written by a
killed run would be taken as finished: it is detected (it does not open) and recomputed. A partial run
with other execution settings (partitions, strategy) is discarded, since its files do not fit together.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ifguide_cli.core import dist
from ifguide_cli.core.errors import IfguideError

KRON_DIR = "kronfluence"  # kronfluence's analysis folder inside an artifact
RUN_FILE = ".run.json"  # execution parameters of a partial run in the staging folder


def influence_device(preference: str | None) -> str:
    """The device a factors or scores run with `--device preference` uses, as manifests and the CLI name it."""
    return dist.device_label(dist.resolve_device(preference))


def check_split(rows: int, partitions: int, dinfo: dist.DistInfo, what: str = "training rows") -> None:
    """Every process must get rows of every partition."""
    if rows < dinfo.world * partitions:
        raise IfguideError(f"{rows} {what} cannot be split into {partitions} partition(s) over {dinfo.world} process(es)",
                           hint="use fewer --partitions or processes", exit_code=2)


def done_partitions(folder: Path, prefix: str) -> int:
    """How many data partitions of a kronfluence phase are already on disk (for the progress bar)."""
    if not folder.is_dir():
        return 0
    return len({p.name.split("_module_partition")[0] for p in folder.glob(f"*{prefix}*data_partition*.safetensors")})


def valid_safetensors(path: Path) -> bool:
    """Whether a safetensors file opens and every tensor in it can be read."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            names = fh.keys()
            for key in names:
                fh.get_slice(key)
        return True
    except Exception:
        return False


def drop_corrupt_safetensors(folder: Path) -> list[str]:
    """Delete safetensors files a killed run left half-written (they would be taken as finished)."""
    removed: list[str] = []
    if not folder.is_dir():
        return removed
    for path in folder.rglob("*.safetensors"):
        if not valid_safetensors(path):
            path.unlink(missing_ok=True)
            removed.append(str(path.relative_to(folder)))
    return removed


def prepare_staging(staging: Path, run: dict, dinfo: dist.DistInfo, kron_dir: Path) -> str | None:
    """Resume check (rank 0): drop half-written files; if the partial run used other settings, start over.

    Returns a note for the user when a previous run's files were found (resumed, repaired or discarded).
    """
    from ifguide_cli.core.store.workspace import atomic_write_text

    note = None
    if dinfo.main:
        run_file = staging / RUN_FILE
        if run_file.is_file():
            old = json.loads(run_file.read_text())
            if old != run:
                shutil.rmtree(kron_dir, ignore_errors=True)
                note = f"discarded a partial run with other execution settings ({old})"
        if kron_dir.exists():
            removed = drop_corrupt_safetensors(kron_dir)
            if removed:
                note = f"recomputing {len(removed)} half-written file(s) of an interrupted run"
            elif note is None and any(kron_dir.rglob("*.safetensors")):
                note = "resuming an interrupted run"
        atomic_write_text(run_file, json.dumps(run))
    dist.barrier()
    return note
