"""One model prepared for kronfluence, and the two Analyzer passes on it (fit factors, pairwise scores).

Precision: ``fp32`` everywhere, or ``bf16`` = bf16 weights and autocast forward/backward with fp32
covariance/Lambda accumulation, fp32 query gradients and preconditioning (a few queries, the
accuracy-critical part); the per-token contraction with the training gradients runs in bf16.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

from ifguide_cli.core.dist import DistInfo
from ifguide_cli.core.heap import map_large_allocations, release_free_memory
from ifguide_cli.core.influence import kron_compat
from ifguide_cli.core.influence.queries import QueryRows
from ifguide_cli.core.influence.staging import KRON_DIR, done_partitions
from ifguide_cli.core.influence.task import make_task
from ifguide_cli.core.progress import NULL

SCORES_NAME = "differential"  # kronfluence's name of the scores inside the staging folder


class _Progress:
    """Task callbacks after each training batch: our reporter advances (kronfluence's own tqdm is off), and the
    batch's freed memory goes back to the OS (see `core.heap`: without it resident memory grows per batch)."""

    def __init__(self):
        self.task = None

    def __call__(self, n: int) -> None:
        release_free_memory()
        if self.task is not None:
            self.task.advance(n)

    @contextlib.contextmanager
    def into(self, task) -> Iterator[None]:
        """Advance `task` with the batches kronfluence processes inside this block."""
        self.task = task
        try:
            yield
        finally:
            self.task = None


class InfluenceEngine:
    """One model prepared for kronfluence (tracked modules, task, process state) and the Analyzer calls on it.

    `precision` is a concrete one: fp32 or bf16 (see `config.influence_precision`). Large host allocations get their
    own mappings from here on (`core.heap.map_large_allocations`: a fragmented heap made a pass's peak memory grow
    with the number of batches).
    """

    def __init__(self, model, modules: list[str], dinfo: DistInfo, precision: str, *, debug: bool = False):
        import torch
        from kronfluence.analyzer import prepare_model

        map_large_allocations()
        kron_compat.check_version()
        kron_compat.silence(debug)
        self.dinfo, self.precision, self.modules, self.debug = dinfo, precision, list(modules), debug
        self.progress = _Progress()
        self.task = make_task(self.modules, on_train_batch=self.progress)
        if precision == "bf16":
            model = model.to(torch.bfloat16)
        self.model = prepare_model(model, self.task)
        self.model.to(dinfo.device)
        if dinfo.distributed:
            self.model = self._distributed(self.model)

    def _distributed(self, model):
        from torch.nn.parallel import DistributedDataParallel as DDP

        if self.dinfo.device.type != "cuda":
            kron_compat.install_cpu_distributed_sync()
        with warnings.catch_warnings():  # broadcast_buffers: the model is identical on every rank, nothing to sync
            warnings.simplefilter("ignore", FutureWarning)
            return DDP(model, device_ids=[self.dinfo.device.index] if self.dinfo.device.type == "cuda" else None,
                       broadcast_buffers=False)

    # -- kronfluence plumbing --
    def analyzer(self, output_dir: Path, factors_dir: Path | None = None):
        """A fresh Analyzer writing under `output_dir` (reading factors from `factors_dir` if given)."""
        kron_compat.fresh_state(self.dinfo)
        with self._quiet():
            return kron_compat.make_analyzer(KRON_DIR, self.model, self.task, output_dir, factors_dir,
                                             cpu=self.dinfo.device.type == "cpu" and not self.dinfo.distributed)

    @contextlib.contextmanager
    def _quiet(self) -> Iterator[None]:
        import torch

        tf32 = torch.backends.cuda.matmul.allow_tf32
        with warnings.catch_warnings():
            if not self.debug:
                warnings.simplefilter("ignore")
            if self.precision == "bf16":  # the fp32 accumulations of a bf16 run may use TF32 tensor cores
                torch.backends.cuda.matmul.allow_tf32 = True
            try:
                yield
            finally:
                torch.backends.cuda.matmul.allow_tf32 = tf32

    def factor_arguments(self, strategy: str, fit_examples: int, partitions: int):
        import torch
        from kronfluence.arguments import FactorArguments

        args = FactorArguments(strategy=strategy, covariance_max_examples=fit_examples, lambda_max_examples=fit_examples,
                               covariance_data_partitions=partitions, lambda_data_partitions=partitions)
        if self.precision == "bf16":
            args.amp_dtype = torch.bfloat16  # forward/backward in bf16; covariance and Lambda accumulate in fp32
        return args

    def score_arguments(self, damping: float | None, per_module: bool, partitions: int, query_low_rank: int | None = None):
        import torch
        from kronfluence.arguments import ScoreArguments

        args = ScoreArguments(damping_factor=damping, compute_per_token_scores=True, aggregate_query_gradients=True,
                              compute_per_module_scores=per_module, data_partitions=partitions,
                              query_gradient_low_rank=query_low_rank)
        if self.precision == "bf16":
            args.amp_dtype = torch.bfloat16  # forward/backward and the per-token contraction in bf16
            args.score_dtype = torch.bfloat16
            # query gradient aggregation and preconditioning stay fp32 (a few queries, the accuracy-critical part)
            args.per_sample_gradient_dtype = torch.float32
            args.precondition_dtype = torch.float32
        return args

    # -- the two stages --
    def fit(self, output_dir: Path, train, strategy: str, fit_examples: int, batch_size: int,
            partitions: int, reporter=NULL) -> dict:
        """Covariance → eigendecomposition → Lambda (what the strategy needs). Returns timings."""
        from kronfluence.factor.config import FactorConfig

        analyzer = self.analyzer(output_dir)
        args = self.factor_arguments(strategy, fit_examples, partitions)
        conf = FactorConfig.CONFIGS[strategy]
        per_rank = math.ceil(fit_examples / self.dinfo.world)
        factors_dir = analyzer.factors_output_dir(strategy)
        phases = [("covariance", conf.requires_covariance_matrices, analyzer.fit_covariance_matrices, "activation_covariance"),
                  ("eigendecomposition", conf.requires_eigendecomposition, analyzer.perform_eigendecomposition, None),
                  ("lambda", conf.requires_lambda_matrices, analyzer.fit_lambda_matrices, "lambda_matrix")]
        if not any(p[1] for p in phases):  # identity: kronfluence still records its arguments
            with self._quiet():
                analyzer.fit_covariance_matrices(factors_name=strategy, dataset=train, per_device_batch_size=batch_size,
                                                 factor_args=args)
        timings = {}
        for label, needed, fn, part_prefix in phases:
            if not needed:
                continue
            start = time.perf_counter()
            data = {"dataset": train, "per_device_batch_size": batch_size} if part_prefix else {}
            with reporter.task(f"factors: {label}" + (" (rows)" if part_prefix else ""),
                               total=per_rank if part_prefix else None) as task:
                if part_prefix:
                    task.advance(per_rank * done_partitions(factors_dir, part_prefix) / partitions)
                with self.progress.into(task), self._quiet():
                    fn(factors_name=strategy, factor_args=args, **data)
            timings[label] = round(time.perf_counter() - start, 4)
        return timings

    def scores(self, output_dir: Path, factors_dir: Path, train, queries: QueryRows, *, damping: float | None,
               per_module: bool, batch_size: int, query_batch_size: int, partitions: int, name: str = SCORES_NAME,
               query_low_rank: int | None = None, overwrite: bool = False, reporter=NULL, task=None) -> dict | None:
        """One kronfluence pairwise pass; returns {"all_modules" or module name: (N, T) raw per-position scores} on rank 0.

        `task`: a progress task to advance (one spanning several passes); else one is opened on `reporter`."""
        analyzer = self.analyzer(output_dir, factors_dir)
        args = self.score_arguments(damping, per_module, partitions, query_low_rank)
        scores_dir = analyzer.scores_output_dir(name)
        with contextlib.ExitStack() as stack:
            if task is None:
                per_rank = math.ceil(len(train) / self.dinfo.world)
                task = stack.enter_context(reporter.task("scores: training rows", total=per_rank))
                task.advance(per_rank * done_partitions(scores_dir, "pairwise_scores") / partitions)
            with self.progress.into(task), self._quiet():
                analyzer.compute_pairwise_scores(
                    scores_name=name, factors_name="factors", query_dataset=queries, train_dataset=train,
                    per_device_query_batch_size=query_batch_size, per_device_train_batch_size=batch_size,
                    score_args=args, overwrite_output_dir=overwrite)
        if not self.dinfo.main:
            return None
        raw = analyzer.load_pairwise_scores(name)
        return {k: v[0] if v.dim() == 3 else v for k, v in raw.items()}  # (1, N, T) → (N, T)


def align_to_labels(raw):
    """kronfluence's per-position scores (N, T) → label-aligned scores: out[:, t] = raw[:, t-1], out[:, 0] = 0."""
    import torch

    out = torch.zeros(raw.shape, dtype=torch.float32)
    out[:, 1:] = raw[:, :-1].float()
    return out
