"""Everything that reaches into kronfluence's internals, for exactly the version it was written against.

kronfluence 1.0.1 goes distributed only with CUDA: its `State` describes a process group only when CUDA
is available, its four trackers' `synchronize` methods reduce only on CUDA (`.cuda()` first), and its
timer calls `torch.cuda.synchronize()`. For CPU (gloo) runs we describe the group in `State` ourselves
and install device-agnostic versions of those methods. We also reset its process-wide `State` before
each analysis, read factors from another artifact by overriding `factors_output_dir`, and silence its
logger. These touch private names, so `check_version` refuses any other kronfluence version in one line
instead of failing somewhere deep inside a run.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

from ifguide_cli.core.errors import IfguideError

EXPECTED_VERSION = "1.0.1"  # the kronfluence release these patches were written and tested against


def _installed_version() -> str | None:
    """kronfluence's installed version (package metadata, else its `__version__`); None if it is missing."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kronfluence")
    except PackageNotFoundError:
        try:
            import kronfluence
        except ImportError:
            return None
        return getattr(kronfluence, "__version__", None)


def check_version() -> None:
    """Refuse a kronfluence other than `EXPECTED_VERSION` (its internals are patched here)."""
    installed = _installed_version()
    if installed == EXPECTED_VERSION:
        return
    found = "is not installed" if installed is None else f"{installed} is installed"
    raise IfguideError(f"kronfluence {found}, but ifguide's influence stages need exactly kronfluence {EXPECTED_VERSION} "
                       "(they patch its distributed synchronisation and process state)",
                       hint=f"pip install 'kronfluence=={EXPECTED_VERSION}'", exit_code=2)


def silence(debug: bool = False) -> None:
    """kronfluence's own logging off (our progress bars report), unless --debug."""
    import logging

    logging.getLogger("kronfluence").setLevel(logging.DEBUG if debug else logging.CRITICAL)


def fresh_state(dinfo):
    """kronfluence's process-wide `State`, reset and describing this run (a gloo group too)."""
    from kronfluence.utils.state import State

    State._reset_state()
    state = State(cpu=dinfo.device.type == "cpu")
    if dinfo.distributed and dinfo.device.type == "cpu":
        # kronfluence's State only goes distributed with CUDA; describe the gloo group ourselves
        state.num_processes, state.process_index = dinfo.world, dinfo.rank
        state.local_process_index, state.device = dinfo.local_rank, dinfo.device
    return state


@functools.cache
def _analyzer_class():
    from kronfluence.analyzer import Analyzer

    class FixedFactorsAnalyzer(Analyzer):
        """An Analyzer that reads its factors from a given folder (the factors artifact) when one is set."""

        fixed_factors_dir: Path | None = None

        def factors_output_dir(self, factors_name: str) -> Path:
            if self.fixed_factors_dir is not None:
                return self.fixed_factors_dir
            return super().factors_output_dir(factors_name)

    return FixedFactorsAnalyzer


def make_analyzer(name: str, model, task, output_dir: Path, factors_dir: Path | None, *, cpu: bool):
    """A kronfluence Analyzer writing under `output_dir` and, if given, reading factors from `factors_dir`."""
    analyzer = _analyzer_class()(analysis_name=name, model=model, task=task, cpu=cpu, disable_tqdm=True,
                                 output_dir=str(output_dir))
    analyzer.fixed_factors_dir = factors_dir
    return analyzer


def install_cpu_distributed_sync() -> None:
    """Device-agnostic versions of the four trackers' `synchronize` methods and of `get_time` (once).

    kronfluence reduces factors / aggregated gradients across ranks only when CUDA is available
    (`dist.is_initialized() and torch.cuda.is_available()`, then `.cuda()`), and its distributed timer
    calls `torch.cuda.synchronize()`. CUDA runs are untouched: this is installed for gloo runs only.
    """
    from kronfluence.module.tracker.factor import CovarianceTracker, LambdaTracker
    from kronfluence.module.tracker.gradient import GradientTracker
    from kronfluence.module.tracker.precondition import PreconditionTracker
    from kronfluence.utils.constants import COVARIANCE_FACTOR_NAMES, LAMBDA_FACTOR_NAMES

    if getattr(CovarianceTracker, "_ifguide_cpu_sync", False):
        return
    import kronfluence.computer.factor_computer as factor_computer
    import kronfluence.computer.score_computer as score_computer

    factor_computer.get_time = _get_time
    score_computer.get_time = _get_time
    CovarianceTracker.synchronize = _reduce_to_rank0(COVARIANCE_FACTOR_NAMES)
    LambdaTracker.synchronize = _reduce_to_rank0(LAMBDA_FACTOR_NAMES)
    GradientTracker.synchronize = _gradient_synchronize
    PreconditionTracker.synchronize = _precondition_synchronize
    CovarianceTracker._ifguide_cpu_sync = True


def _reduce_to_rank0(names):
    """Covariance / Lambda trackers: sum the named factors onto rank 0."""
    import torch.distributed as dist

    def synchronize(self, num_processes: int = 1) -> None:
        if dist.is_initialized() and self.exist():
            for name in names:
                self.module.storage[name] = self.module.storage[name].contiguous()
                dist.reduce(tensor=self.module.storage[name], op=dist.ReduceOp.SUM, dst=0)

    return synchronize


def _gradient_synchronize(self, num_processes: int = 1) -> None:
    """Gradient tracker: the aggregated query gradient, summed over every rank."""
    import torch.distributed as dist
    from kronfluence.utils.constants import AGGREGATED_GRADIENT_NAME

    if dist.is_initialized():
        if self.module.storage[AGGREGATED_GRADIENT_NAME] is None:
            raise RuntimeError("a rank got no query batch; use at least as many queries as processes")
        self.module.storage[AGGREGATED_GRADIENT_NAME] = self.module.storage[AGGREGATED_GRADIENT_NAME].contiguous()
        dist.all_reduce(tensor=self.module.storage[AGGREGATED_GRADIENT_NAME], op=dist.ReduceOp.SUM)


def _precondition_synchronize(self, num_processes: int = 1) -> None:
    """Precondition tracker: every rank's preconditioned gradients, gathered along the batch dimension."""
    import torch
    import torch.distributed as dist
    from kronfluence.utils.constants import PRECONDITIONED_GRADIENT_NAME

    grad = self.module.storage[PRECONDITIONED_GRADIENT_NAME]
    if not dist.is_initialized() or grad is None:
        return

    def stack(t):
        size = t.size()
        out = [torch.empty_like(t.contiguous()) for _ in range(num_processes)]
        dist.all_gather(out, t.contiguous())
        return torch.stack(out).transpose(0, 1).reshape(num_processes * size[0], size[1], size[2])

    self.module.storage[PRECONDITIONED_GRADIENT_NAME] = [stack(t) for t in grad] if isinstance(grad, list) else stack(grad)


def _get_time(state) -> float:
    """kronfluence's `get_time` without `torch.cuda.synchronize()`: the latest clock over the ranks."""
    import torch
    import torch.distributed as dist

    if not state.use_distributed:
        return time.time()
    stamp = torch.tensor(time.time(), dtype=torch.float64)
    dist.all_reduce(stamp, op=dist.ReduceOp.MAX)
    return stamp.item()
