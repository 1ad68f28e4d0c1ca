"""Paper steps 1–2: fit EK-FAC factors, then score every training token by differential influence.

Factors (`fit_factors`): kronfluence fits the chosen curvature approximation (ekfac | kfac | diagonal |
identity) of the model's summed next-token CE on the rows of a `datasets` artifact. The artifact holds
kronfluence's own files (``kronfluence/factors_<strategy>/``); `compute_scores` points kronfluence at
that folder later (an `Analyzer` whose `factors_output_dir` is the factors artifact).

Scores (`compute_scores`): ONE kronfluence pass over the training rows with the toxic and the safe
queries concatenated into one query set, each query weighted +1/N_tox or −1/N_safe inside the
measurement, ``aggregate_query_gradients=True`` and ``compute_per_token_scores=True``. Because the
measurement is linear in the weights this equals (toxic run) − (safe run) up to rounding, at half the
cost (see `two_run_reference` for the check).

Alignment of the saved scores (the contract with `mask` and `train`): ``scores[i, t]`` is the influence
of the loss term that PREDICTS token t of row i — the same alignment as ``labels[i, t]`` before the
shift and as the training mask (``mask[i, t]`` weights the loss of predicting token t). kronfluence
reports per-token scores per *input position* p, whose output predicts token p+1, so we store
``scores[:, 1:] = kronfluence[:, :-1]`` and ``scores[:, 0] = 0`` (the first token is never predicted).
Consequently column 0 and every padded position score exactly 0 (kronfluence's last real position of a
row feeds no label and is 0, and lands on the first padded column or falls off the end).

A high score marks a training token whose loss term makes toxic continuations more likely relative to
safe ones (DESIGN.md step 2); the mask takes the top.

Precision: ``fp32`` everywhere, or ``bf16`` = bf16 weights and autocast forward/backward with fp32
covariance/Lambda accumulation, fp32 query gradients and preconditioning. bf16 needs a damping that is
not tiny relative to the curvature (kronfluence's heuristic ``damping=None`` = 0.1 × mean eigenvalue per
module is the default and is what makes bf16 agree with fp32); an explicit damping below
`BF16_MIN_RELATIVE_DAMPING` × a module's mean eigenvalue is refused in bf16.

Resumable: kronfluence writes per-partition files into the artifact's staging folder and skips the
ones that exist; a truncated file from a killed run is detected and recomputed. Distributed: run the
same command under ``torchrun``/``accelerate launch``; every rank computes its share in the same
staging folder, rank 0 writes and publishes (kronfluence 1.0.1 reduces across ranks only on CUDA, so
for CPU/gloo runs we install device-agnostic versions of its four ``synchronize`` methods).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import random
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .errors import ArtifactNotFound, IfguideError
from .influence_task import FISHER_SEED
from .progress import NULL
from .workspace import Artifact, atomic_write_text, process_rank

STRATEGIES = ("ekfac", "kfac", "diagonal", "identity")
PRECISIONS = ("fp32", "bf16")
SCORES_FILE = "scores.safetensors"
MODULE_SCORES_FILE = "module_scores.safetensors"
KRON_DIR = "kronfluence"  # kronfluence's analysis folder inside an artifact
SCORES_NAME = "differential"
RUN_FILE = ".run.json"  # execution parameters of a partial run in the staging folder
BF16_MIN_RELATIVE_DAMPING = 1e-3  # damping / (mean eigenvalue) below this is refused in bf16
DEFAULT_MAX_EXAMPLES = 100_000  # kronfluence's own default for covariance/Lambda fitting
TOKENS_PER_BATCH = 16_384  # default batch = this many tokens per device (rows × seq_len)
ALIGNMENT = "scores[i, t] = influence of the loss predicting token t (labels before the shift); column 0 and padding are 0"


# ---- configs -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class FactorsConfig:
    strategy: str = "ekfac"
    precision: str = "fp32"
    max_examples: int | None = DEFAULT_MAX_EXAMPLES  # rows used to fit covariance / Lambda (None = all)
    modules: tuple[str, ...] | None = None  # globs overriding the family's (None = the family's)
    families_file: str | None = None
    seq_len: int | None = None  # for tokenizing a source dataset (default 64 tiny / 2048 else)
    # execution only (not part of the artifact id):
    batch_size: int | None = None  # rows per device and batch (default: TOKENS_PER_BATCH tokens)
    partitions: int = 1  # data partitions: the unit of resumption
    device: str = "auto"


@dataclass(frozen=True)
class ScoresConfig:
    damping: float | None = None  # None = kronfluence's heuristic, 0.1 × mean eigenvalue per module
    precision: str = "fp32"
    per_module: bool = False
    max_queries: int | None = None  # subsample each query set to at most this many (seeded)
    query_seed: int = 0
    query_low_rank: int | None = None  # refused with safe queries (breaks the one-pass linearity)
    # execution only:
    batch_size: int | None = None
    query_batch_size: int = 16
    partitions: int = 1
    device: str = "auto"


@dataclass
class StageResult:
    artifact: Artifact
    reused: bool
    info: dict = field(default_factory=dict)


def validate_factors_config(cfg: FactorsConfig) -> None:
    from .errors import check_range

    if cfg.strategy not in STRATEGIES:
        raise IfguideError(f"unknown strategy {cfg.strategy!r}; choose one of {', '.join(STRATEGIES)}", exit_code=2)
    _check_precision(cfg.precision)
    if cfg.max_examples is not None:
        check_range("--max-examples", cfg.max_examples, 1)
    if cfg.batch_size is not None:
        check_range("--batch-size", cfg.batch_size, 1)
    check_range("--partitions", cfg.partitions, 1)
    _check_device(cfg.device)


def validate_scores_config(cfg: ScoresConfig, differential: bool) -> None:
    from .errors import check_range

    _check_precision(cfg.precision)
    if cfg.damping is not None:
        check_range("--damping", cfg.damping, 0.0, low_inclusive=False)
    if cfg.max_queries is not None:
        check_range("--max-queries", cfg.max_queries, 1)
    if cfg.batch_size is not None:
        check_range("--batch-size", cfg.batch_size, 1)
    check_range("--query-batch-size", cfg.query_batch_size, 1)
    check_range("--partitions", cfg.partitions, 1)
    _check_device(cfg.device)
    if cfg.query_low_rank is not None:
        check_range("--query-low-rank", cfg.query_low_rank, 1)
        if differential:
            raise IfguideError(
                "--query-low-rank cannot be combined with --safe-queries: a low-rank query gradient is not linear in the "
                "query weights, so the one-pass differential would no longer equal toxic minus safe",
                hint="drop --query-low-rank (the aggregated query gradient is one matrix per layer anyway)", exit_code=2)


def _check_precision(p: str) -> None:
    if p not in PRECISIONS:
        raise IfguideError(f"unknown precision {p!r}; choose one of {', '.join(PRECISIONS)}", exit_code=2)


def _check_device(d: str) -> None:
    if d not in ("auto", "cpu", "cuda"):
        raise IfguideError(f"unknown device {d!r}; choose auto, cpu or cuda", exit_code=2)


# ---- distributed -----------------------------------------------------------------------------
@dataclass(frozen=True)
class DistInfo:
    rank: int
    world: int
    local_rank: int
    device: Any  # torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def setup_device(preference: str = "auto") -> DistInfo:
    """The device of this process; under torchrun/accelerate also initialise torch.distributed (nccl / gloo)."""
    import torch

    rank, world = process_rank()
    local_rank = int(os.environ.get("LOCAL_RANK", rank if world > 1 else 0))
    if preference == "cuda" and not torch.cuda.is_available():
        raise IfguideError("--device cuda was asked for but no CUDA device is available", hint="use --device cpu", exit_code=2)
    use_cuda = torch.cuda.is_available() and preference != "cpu"
    if use_cuda:
        device = torch.device("cuda", local_rank if world > 1 else torch.cuda.current_device())
        if world > 1:
            torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(rank, world, local_rank, device)


def barrier(dinfo: DistInfo) -> None:
    if dinfo.distributed:
        import torch.distributed as dist

        dist.barrier()


def _device_label(dinfo: DistInfo) -> str:
    import torch

    if dinfo.device.type == "cuda":
        name = torch.cuda.get_device_name(dinfo.device)
    else:
        name = "cpu"
    return f"{name} × {dinfo.world}" if dinfo.distributed else name


# ---- datasets for kronfluence ------------------------------------------------------------------
class TrainRows:
    """The (N, T) corpus as a map-style dataset of {input_ids, attention_mask, labels} (labels -100 on padding)."""

    def __init__(self, input_ids, attention_mask):
        self.input_ids = input_ids
        self.attention_mask = attention_mask

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def __getitem__(self, i: int) -> dict:
        ids = self.input_ids[i]
        am = self.attention_mask[i]
        # `index` seeds the pseudo-labels of the true-Fisher pass (influence_task.sample_labels)
        return {"input_ids": ids, "attention_mask": am, "labels": ids.masked_fill(am.eq(0), -100), "index": i}


class QueryRows:
    """Prompt+continuation queries padded to one length: labels -100 on prompt and padding; a weight each."""

    def __init__(self, input_ids, attention_mask, labels, weight):
        self.input_ids, self.attention_mask, self.labels, self.weight = input_ids, attention_mask, labels, weight

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.input_ids[i], "attention_mask": self.attention_mask[i], "labels": self.labels[i],
                "weight": self.weight[i]}


def join_query(prompt: str, continuation: str) -> str:
    """prompt + continuation as one text; a space between them unless one side already has it (RTP style) or the
    continuation starts with punctuation."""
    if not prompt or not continuation or prompt[-1].isspace() or continuation[0].isspace() or continuation[0] in ",.;:!?)]}'\"":
        return prompt + continuation
    return prompt + " " + continuation


def tokenize_queries(pairs: list[dict], tokenizer, max_len: int) -> tuple[list[list[int]], list[int]]:
    """Token ids of the joined prompt+continuation and the number of prompt tokens, per pair.

    The text is tokenized as a whole (as the model saw such text in training); the prompt part is the longest
    common prefix with the prompt tokenized alone, so a token merged across the boundary counts as continuation.
    Long queries lose prompt tokens from the left to fit `max_len`.
    """
    prompts = tokenizer([p["prompt"] for p in pairs], add_special_tokens=False)["input_ids"]
    fulls = tokenizer([join_query(p["prompt"], p["continuation"]) for p in pairs], add_special_tokens=False)["input_ids"]
    ids, n_prompt = [], []
    for p, f in zip(prompts, fulls):
        n = 0
        while n < min(len(p), len(f)) and p[n] == f[n]:
            n += 1
        cut = max(0, len(f) - max_len)
        if cut > n:  # the continuation alone is too long: keep its beginning
            f, cut = f[n: n + max_len - 1], 0
            f = p[n - 1: n] + f if n else f
            n = 1 if n else 0
        ids.append(f[cut:])
        n_prompt.append(n - cut)
    return ids, n_prompt


def build_query_rows(sets: list[tuple[list[list[int]], list[int], float]], pad_id: int) -> QueryRows:
    """Concatenate query sets [(ids, n_prompt, weight per query)] into one padded QueryRows."""
    import torch

    rows = [(ids, n, w) for ids_list, n_list, w in sets for ids, n in zip(ids_list, n_list)]
    length = max(len(ids) for ids, _, _ in rows)
    input_ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), length), dtype=torch.long)
    labels = torch.full((len(rows), length), -100, dtype=torch.long)
    weight = torch.empty(len(rows), dtype=torch.float32)
    for i, (ids, n, w) in enumerate(rows):
        t = torch.tensor(ids, dtype=torch.long)
        input_ids[i, : len(ids)] = t
        attention[i, : len(ids)] = 1
        labels[i, n: len(ids)] = t[n:]
        weight[i] = w
    return QueryRows(input_ids, attention, labels, weight)


def continuation_tokens(ids: list[list[int]], n_prompt: list[int]) -> list[int]:
    """Continuation tokens that get a loss term (a continuation token at position 0 has no prediction)."""
    return [len(x) - max(n, 1) for x, n in zip(ids, n_prompt)]


# ---- model preparation -----------------------------------------------------------------------
def model_fingerprint(model) -> str:
    """A cheap, deterministic fingerprint of the weights (shapes, float64 sums, strided samples), computed on CPU."""
    import torch

    digest = hashlib.sha256()
    with torch.no_grad():
        for name, tensor in sorted(model.state_dict().items()):
            t = tensor.detach().to("cpu")
            digest.update(f"{name}:{tuple(t.shape)}".encode())
            if t.numel() == 0:
                continue
            flat = t.reshape(-1)
            if flat.is_floating_point():
                flat64 = flat.double()
                digest.update(f"{flat64.sum().item():.12e}:{flat64.abs().sum().item():.12e}".encode())
                sample = flat[:: max(1, flat.numel() // 257)][:257].float()
            else:
                sample = flat[:: max(1, flat.numel() // 257)][:257].long()
            digest.update(sample.numpy().tobytes())
    return digest.hexdigest()[:16]


def _silence_kronfluence(debug: bool = False) -> None:
    logging.getLogger("kronfluence").setLevel(logging.DEBUG if debug else logging.CRITICAL)


def _install_cpu_distributed_sync() -> None:
    """kronfluence 1.0.1 reduces factors / aggregated gradients across ranks only when CUDA is available
    (`dist.is_initialized() and torch.cuda.is_available()`, then `.cuda()`), and its distributed timer calls
    `torch.cuda.synchronize()`. For CPU (gloo) runs install equivalent device-agnostic versions of those four
    `synchronize` methods and of `get_time`; CUDA runs are untouched."""
    import torch
    import torch.distributed as dist
    from kronfluence.module.tracker.factor import CovarianceTracker, LambdaTracker
    from kronfluence.module.tracker.gradient import GradientTracker
    from kronfluence.module.tracker.precondition import PreconditionTracker
    from kronfluence.utils.constants import (
        AGGREGATED_GRADIENT_NAME,
        COVARIANCE_FACTOR_NAMES,
        LAMBDA_FACTOR_NAMES,
        PRECONDITIONED_GRADIENT_NAME,
    )

    if getattr(CovarianceTracker, "_ifguide_cpu_sync", False):
        return

    def reduce_names(names):
        def synchronize(self, num_processes: int = 1) -> None:
            if dist.is_initialized() and self.exist():
                for name in names:
                    self.module.storage[name] = self.module.storage[name].contiguous()
                    dist.reduce(tensor=self.module.storage[name], op=dist.ReduceOp.SUM, dst=0)
        return synchronize

    def gradient_synchronize(self, num_processes: int = 1) -> None:
        if dist.is_initialized():
            if self.module.storage[AGGREGATED_GRADIENT_NAME] is None:
                raise RuntimeError("a rank got no query batch; use at least as many queries as processes")
            self.module.storage[AGGREGATED_GRADIENT_NAME] = self.module.storage[AGGREGATED_GRADIENT_NAME].contiguous()
            dist.all_reduce(tensor=self.module.storage[AGGREGATED_GRADIENT_NAME], op=dist.ReduceOp.SUM)

    def precondition_synchronize(self, num_processes: int = 1) -> None:
        grad = self.module.storage[PRECONDITIONED_GRADIENT_NAME]
        if not dist.is_initialized() or grad is None:
            return

        def stack(t):
            size = t.size()
            out = [torch.empty_like(t.contiguous()) for _ in range(num_processes)]
            dist.all_gather(out, t.contiguous())
            return torch.stack(out).transpose(0, 1).reshape(num_processes * size[0], size[1], size[2])

        self.module.storage[PRECONDITIONED_GRADIENT_NAME] = [stack(t) for t in grad] if isinstance(grad, list) else stack(grad)

    def get_time(state) -> float:  # kronfluence's version calls torch.cuda.synchronize() whenever distributed
        if not state.use_distributed:
            return time.time()
        stamp = torch.tensor(time.time(), dtype=torch.float64)
        dist.all_reduce(stamp, op=dist.ReduceOp.MAX)
        return stamp.item()

    import kronfluence.computer.factor_computer as factor_computer
    import kronfluence.computer.score_computer as score_computer

    factor_computer.get_time = get_time
    score_computer.get_time = get_time
    CovarianceTracker.synchronize = reduce_names(COVARIANCE_FACTOR_NAMES)
    LambdaTracker.synchronize = reduce_names(LAMBDA_FACTOR_NAMES)
    GradientTracker.synchronize = gradient_synchronize
    PreconditionTracker.synchronize = precondition_synchronize
    CovarianceTracker._ifguide_cpu_sync = True


class _Progress:
    """Task callbacks → our reporter (kronfluence's own tqdm is off)."""

    def __init__(self):
        self.task = None

    def __call__(self, n: int) -> None:
        if self.task is not None:
            self.task.advance(n)


class InfluenceEngine:
    """One model prepared for kronfluence (tracked modules, task, process state) and the Analyzer calls on it."""

    def __init__(self, model, modules: list[str], dinfo: DistInfo, precision: str, *, debug: bool = False):
        import torch

        from .influence_task import make_task

        _silence_kronfluence(debug)
        self.dinfo, self.precision, self.modules = dinfo, precision, list(modules)
        self.progress = _Progress()
        self.task = make_task(self.modules, on_train_batch=self.progress)
        if precision == "bf16":
            model = model.to(torch.bfloat16)
        from kronfluence.analyzer import prepare_model

        self.model = prepare_model(model, self.task)
        self.model.to(dinfo.device)
        if dinfo.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            if dinfo.device.type != "cuda":
                _install_cpu_distributed_sync()
            with warnings.catch_warnings():  # broadcast_buffers: the model is identical on every rank, nothing to sync
                warnings.simplefilter("ignore", FutureWarning)
                self.model = DDP(self.model, device_ids=[dinfo.device.index] if dinfo.device.type == "cuda" else None,
                                 broadcast_buffers=False)
        self.debug = debug

    # -- kronfluence plumbing --
    def analyzer(self, output_dir: Path, factors_dir: Path | None = None):
        from kronfluence.analyzer import Analyzer
        from kronfluence.utils.state import State

        State._reset_state()
        state = State(cpu=self.dinfo.device.type == "cpu")
        if self.dinfo.distributed and self.dinfo.device.type == "cpu":
            # kronfluence's State only goes distributed with CUDA; describe the gloo group ourselves
            state.num_processes, state.process_index = self.dinfo.world, self.dinfo.rank
            state.local_process_index, state.device = self.dinfo.local_rank, self.dinfo.device
        fixed_factors_dir = factors_dir

        class _Analyzer(Analyzer):
            def factors_output_dir(self, factors_name: str) -> Path:  # read factors from the factors artifact
                if fixed_factors_dir is not None:
                    return fixed_factors_dir
                return super().factors_output_dir(factors_name)

        with self._quiet():
            return _Analyzer(analysis_name=KRON_DIR, model=self.model, task=self.task,
                             cpu=self.dinfo.device.type == "cpu" and not self.dinfo.distributed,
                             disable_tqdm=True, output_dir=str(output_dir))

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
    def fit(self, output_dir: Path, train: TrainRows, strategy: str, fit_examples: int, batch_size: int,
            partitions: int, reporter=NULL) -> dict:
        """Covariance → eigendecomposition → Lambda (what the strategy needs). Returns timings."""
        analyzer = self.analyzer(output_dir)
        args = self.factor_arguments(strategy, fit_examples, partitions)
        from kronfluence.factor.config import FactorConfig

        conf = FactorConfig.CONFIGS[strategy]
        timings = {}
        per_rank = math.ceil(fit_examples / self.dinfo.world)
        factors_dir = analyzer.factors_output_dir(strategy)
        phases = [("covariance", conf.requires_covariance_matrices, analyzer.fit_covariance_matrices, "activation_covariance"),
                  ("eigendecomposition", conf.requires_eigendecomposition, analyzer.perform_eigendecomposition, None),
                  ("lambda", conf.requires_lambda_matrices, analyzer.fit_lambda_matrices, "lambda_matrix")]
        if not any(p[1] for p in phases):  # identity: kronfluence still records its arguments
            with self._quiet():
                analyzer.fit_covariance_matrices(factors_name=strategy, dataset=train, per_device_batch_size=batch_size,
                                                 factor_args=args)
        for label, needed, fn, part_prefix in phases:
            if not needed:
                continue
            start = time.perf_counter()
            total = per_rank if part_prefix else None
            with reporter.task(f"factors: {label}" + (" (rows)" if part_prefix else ""), total=total) as task:
                if part_prefix:
                    done = _done_partitions(factors_dir, part_prefix)
                    task.advance(per_rank * done / partitions)
                self.progress.task = task
                try:
                    with self._quiet():
                        if part_prefix:
                            fn(factors_name=strategy, dataset=train, per_device_batch_size=batch_size, factor_args=args)
                        else:
                            fn(factors_name=strategy, factor_args=args)
                finally:
                    self.progress.task = None
            timings[label] = round(time.perf_counter() - start, 4)
        return timings

    def scores(self, output_dir: Path, factors_dir: Path, train: TrainRows, queries: QueryRows, *, damping: float | None,
               per_module: bool, batch_size: int, query_batch_size: int, partitions: int, name: str = SCORES_NAME,
               query_low_rank: int | None = None, overwrite: bool = False, reporter=NULL) -> dict | None:
        """One kronfluence pairwise pass; returns {"all_modules" or module name: (N, T) raw per-position scores} on rank 0."""
        analyzer = self.analyzer(output_dir, factors_dir)
        args = self.score_arguments(damping, per_module, partitions, query_low_rank)
        scores_dir = analyzer.scores_output_dir(name)
        per_rank = math.ceil(len(train) / self.dinfo.world)
        with reporter.task("scores: training rows", total=per_rank) as task:
            task.advance(per_rank * _done_partitions(scores_dir, "pairwise_scores") / partitions)
            self.progress.task = task
            try:
                with self._quiet():
                    analyzer.compute_pairwise_scores(
                        scores_name=name, factors_name="factors", query_dataset=queries, train_dataset=train,
                        per_device_query_batch_size=query_batch_size, per_device_train_batch_size=batch_size,
                        score_args=args, overwrite_output_dir=overwrite)
            finally:
                self.progress.task = None
        if not self.dinfo.main:
            return None
        raw = analyzer.load_pairwise_scores(name)
        return {k: v[0] if v.dim() == 3 else v for k, v in raw.items()}  # (1, N, T) → (N, T)


def _done_partitions(folder: Path, prefix: str) -> int:
    if not folder.is_dir():
        return 0
    return len({p.name.split("_module_partition")[0] for p in folder.glob(f"*{prefix}*data_partition*.safetensors")})


def align_to_labels(raw):
    """kronfluence's per-position scores (N, T) → label-aligned scores: out[:, t] = raw[:, t-1], out[:, 0] = 0."""
    import torch

    out = torch.zeros(raw.shape, dtype=torch.float32)
    out[:, 1:] = raw[:, :-1].float()
    return out


def _valid_safetensors(path: Path) -> bool:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            for key in fh.keys():
                fh.get_slice(key)
        return True
    except Exception:
        return False


def drop_corrupt_safetensors(folder: Path) -> list[str]:
    """Delete safetensors files a killed run left half-written (they would be taken as finished)."""
    removed = []
    if not folder.is_dir():
        return removed
    for path in folder.rglob("*.safetensors"):
        if not _valid_safetensors(path):
            path.unlink(missing_ok=True)
            removed.append(str(path.relative_to(folder)))
    return removed


def prepare_staging(staging: Path, run: dict, dinfo: DistInfo, kron_dir: Path) -> str | None:
    """Resume check (rank 0): drop half-written files; if the partial run used other partitions, start over."""
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
    barrier(dinfo)
    return note


def default_batch_size(seq_len: int) -> int:
    return max(1, TOKENS_PER_BATCH // max(1, seq_len))


# ---- resolving inputs ------------------------------------------------------------------------
def resolve_dataset(ws, data_ref: str, mref, seq_len: int | None, dinfo: DistInfo, *, reporter=NULL):
    """The training rows' `datasets` artifact (built once by rank 0 under torchrun; the other ranks then find it)."""
    from .data import resolve_corpus

    return resolve_corpus(ws, data_ref, mref, seq_len, reporter=reporter, barrier=lambda: barrier(dinfo))[0]


def model_from_identity(identity: dict, ws):
    """Re-resolve the model a factors artifact was fit on, from its recorded identity."""
    from .models import resolve_model

    source = identity.get("source")
    if source == "checkpoint":
        return resolve_model(identity["artifact_id"], ws)
    return resolve_model(identity["location"], ws)


def resolve_family(mref, ws, *, families_file: str | None = None, module_globs: tuple[str, ...] | None = None,
                   family_spec: dict | None = None):
    """The module family to track: a factors artifact's (`family_spec`), --modules globs, or the registry's (cheap:
    reads the model config only, so an unknown family fails before any data or weights are loaded)."""
    from .influence_task import ModuleFamily, custom_family, find_family, load_families
    from .models import model_family

    if family_spec is not None:
        return ModuleFamily(family_spec["name"], tuple(family_spec["modules"]), (), tuple(family_spec.get("exclude", ())),
                            source="factors artifact")
    if module_globs:
        return custom_family(list(module_globs))
    return find_family(model_family(mref), load_families(families_file, ws.root))


def load_model_for_influence(mref, family):
    """The model in fp32 (GPT-2 Conv1D layers converted to nn.Linear), its tracked modules and weight fingerprint."""
    from .influence_task import convert_conv1d_to_linear, select_modules
    from .models import load_model

    from transformers.utils import logging as hf_logging

    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # transformers' "Loading weights" bar
    try:
        model = load_model(mref)
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    convert_conv1d_to_linear(model)  # GPT-2 style Conv1D layers → equivalent nn.Linear (kronfluence tracks Linear)
    fingerprint = model_fingerprint(model)
    modules = select_modules(model, family)
    return model, modules, fingerprint


# ---- step 1: factors -------------------------------------------------------------------------
def fit_factors(ws, model_ref: str, data_ref: str, cfg: FactorsConfig, *, reporter=NULL, force: bool = False,
                name: str | None = None, debug: bool = False) -> StageResult:
    """Fit influence factors of MODEL on DATA (a `factors` artifact). Reuses an identical finished one."""
    from .data import load_corpus
    from .models import resolve_model

    validate_factors_config(cfg)
    dinfo = setup_device(cfg.device)
    mref = resolve_model(model_ref, ws)
    family = resolve_family(mref, ws, families_file=cfg.families_file, module_globs=cfg.modules)
    dataset = resolve_dataset(ws, data_ref, mref, cfg.seq_len, dinfo, reporter=reporter if dinfo.main else NULL)
    corpus = load_corpus(dataset)
    n_rows, seq_len = corpus.shape
    fit_examples = n_rows if cfg.max_examples is None else min(cfg.max_examples, n_rows)
    if fit_examples < dinfo.world * cfg.partitions:
        raise IfguideError(f"{fit_examples} training rows cannot be split into {cfg.partitions} partition(s) over "
                           f"{dinfo.world} process(es)", hint="use fewer --partitions or processes", exit_code=2)
    model, modules, fingerprint = load_model_for_influence(mref, family)
    batch_size = cfg.batch_size or default_batch_size(seq_len)
    config = {
        "model": mref.identity(), "model_fingerprint": fingerprint, "family": family.identity(), "modules": modules,
        "dataset": dataset.id, "seq_len": seq_len, "fit_examples": fit_examples, "strategy": cfg.strategy,
        "precision": cfg.precision, "use_empirical_fisher": False, "fisher_seed": FISHER_SEED, "tokenizer": mref.tokenizer,
    }
    parents = [dataset.id] + mref.parents
    engine = InfluenceEngine(model, modules, dinfo, cfg.precision, debug=debug)
    info: dict = {"dataset": dataset.id, "batch_size": batch_size, "partitions": cfg.partitions, "device": _device_label(dinfo)}
    if mref.source == "registry" and not mref.pretrained:
        info["note"] = (f"note: {model_ref!r} has no pretrained weights, so these are the factors of its seeded random "
                        f"initialisation; train it first (`ifguide train {model_ref} --data ...`) and pass the checkpoint")

    def build(ctx):
        note = prepare_staging(ctx.staging, {"partitions": cfg.partitions, "strategy": cfg.strategy}, dinfo,
                               ctx.staging / KRON_DIR)
        if note:
            info["resume"] = note
        train = TrainRows(corpus.input_ids, corpus.attention_mask)
        start = time.perf_counter()
        with ctx.timed("fit"):
            phase_times = engine.fit(ctx.staging, train, cfg.strategy, fit_examples, batch_size, cfg.partitions,
                                     reporter=reporter if dinfo.main else NULL)
        ctx.timings.update({f"fit_{k}": v for k, v in phase_times.items()})
        barrier(dinfo)
        elapsed = time.perf_counter() - start
        tokens = int(corpus.attention_mask[:fit_examples].sum())
        if dinfo.main:
            (ctx.staging / RUN_FILE).unlink(missing_ok=True)
        return {"strategy": cfg.strategy, "precision": cfg.precision, "modules": len(modules), "family": family.name,
                "fit_examples": fit_examples, "fit_tokens": tokens, "seq_len": seq_len, "dataset": dataset.id,
                "batch_size": batch_size, "partitions": cfg.partitions, "processes": dinfo.world,
                "seconds": round(elapsed, 3),
                "files": f"{KRON_DIR}/factors_{cfg.strategy}/"}

    art, reused = ws.create("factors", config, parents, build, name=name, force=force, device=_device_label(dinfo))
    return StageResult(art, reused, info)


def factors_dir_of(art: Artifact) -> Path:
    strategy = art.config.get("strategy")
    path = art.path / KRON_DIR / f"factors_{strategy}"
    if not (path / "factor_arguments.json").is_file():
        raise IfguideError(f"factors artifact {art.id} has no kronfluence factors in {path}",
                           hint=f"rebuild it with `ifguide factors ... --force` or remove it (`ifguide workspace rm {art.id}`)")
    return path


# ---- step 2: scores --------------------------------------------------------------------------
@dataclass
class QuerySet:
    ref: str
    identity: dict
    pairs: list[dict]
    ids: list[list[int]]
    n_prompt: list[int]
    dropped: int = 0

    def describe(self) -> dict:
        digest = hashlib.sha256(json.dumps(self.pairs, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]
        return {**self.identity, "queries": len(self.pairs), "sha256": digest}


def load_query_set(ref: str, tokenizer, max_len: int, max_queries: int | None, seed: int, role: str) -> QuerySet:
    """A query set (registry entry, RTP-style jsonl, hub id), subsampled and tokenized; empty continuations dropped."""
    from .data import load_queries

    pairs, identity = load_queries(ref)
    if max_queries is not None and len(pairs) > max_queries:
        keep = sorted(random.Random(f"{seed}:{role}").sample(range(len(pairs)), max_queries))
        pairs = [pairs[i] for i in keep]
    ids, n_prompt = tokenize_queries(pairs, tokenizer, max_len)
    counts = continuation_tokens(ids, n_prompt)
    if sum(counts) == 0:
        raise IfguideError(f"{role} query set {ref!r} has no continuation tokens: every continuation is empty after tokenization",
                           hint="each record needs a non-empty `continuation` (the text whose likelihood is measured)", exit_code=2)
    keep = [i for i, c in enumerate(counts) if c > 0]
    dropped = len(pairs) - len(keep)
    pairs, ids, n_prompt = [pairs[i] for i in keep], [ids[i] for i in keep], [n_prompt[i] for i in keep]
    return QuerySet(ref, identity, pairs, ids, n_prompt, dropped)


def query_rows(toxic: QuerySet, safe: QuerySet | None, pad_id: int) -> QueryRows:
    """Toxic queries weighted +1/N_tox, safe ones −1/N_safe, in one set."""
    sets = [(toxic.ids, toxic.n_prompt, 1.0 / len(toxic.ids))]
    if safe is not None:
        sets.append((safe.ids, safe.n_prompt, -1.0 / len(safe.ids)))
    return build_query_rows(sets, pad_id)


def relative_damping(factors_dir: Path, strategy: str, damping: float) -> dict[str, float]:
    """damping / mean eigenvalue, per module (the quantity that decides whether bf16 preconditioning is accurate)."""
    from safetensors.torch import load_file

    means: dict[str, float] = {}
    if strategy in ("ekfac", "diagonal"):
        lam = load_file(str(factors_dir / "lambda_matrix.safetensors"))
        num = load_file(str(factors_dir / "num_lambda_processed.safetensors"))
        for k, v in lam.items():
            means[k] = float((v.double() / num[k].double()).mean())
    elif strategy == "kfac":
        act = load_file(str(factors_dir / "activation_eigenvalues.safetensors"))
        grad = load_file(str(factors_dir / "gradient_eigenvalues.safetensors"))
        for k in act:
            means[k] = float(act[k].double().mean() * grad[k].double().mean())
    return {k: (damping / m if m > 0 else math.inf) for k, m in means.items()}


def heuristic_damping(factors_dir: Path, strategy: str) -> dict[str, float] | None:
    """The per-module damping kronfluence's heuristic uses (0.1 × mean eigenvalue); None for identity."""
    rel = relative_damping(factors_dir, strategy, 1.0)
    if not rel:
        return None
    return {k: 0.1 / r for k, r in rel.items()}


def compute_scores(ws, factors_ref: str, toxic_ref: str, safe_ref: str | None, cfg: ScoresConfig, *,
                   data_ref: str | None = None, model_ref: str | None = None, reporter=NULL, force: bool = False,
                   name: str | None = None, debug: bool = False) -> StageResult:
    """Token-wise differential influence of the training rows (a `scores` artifact)."""
    import torch
    from safetensors.torch import save_file

    from .data import is_source_ref, load_corpus
    from .models import load_tokenizer, resolve_model

    validate_scores_config(cfg, differential=safe_ref is not None)
    fart = ws.resolve(factors_ref, "factors")
    fconf = fart.config
    fdir = factors_dir_of(fart)
    dinfo = setup_device(cfg.device)

    # the model: the one the factors were fit on; --model must name the same one
    try:
        mref = model_from_identity(fconf["model"], ws)
    except IfguideError as exc:
        raise IfguideError(f"the model factors {fart.id} were fit on is not available ({exc.message})",
                           hint="pass it with --model", exit_code=2) from None
    if model_ref is not None:
        given = resolve_model(model_ref, ws)
        if given.identity() != fconf["model"]:
            raise IfguideError(f"factors {fart.id} were fit on model {_describe_model(fconf['model'])}, not {model_ref!r}",
                               hint="fit factors for this model first (`ifguide factors MODEL --data ...`)", exit_code=2)
        mref = given

    # the training rows: the factors' dataset, or another one with the same tokenizer and row length
    fit_dataset = ws.by_id(fconf["dataset"])
    if data_ref is None:
        if fit_dataset is None:
            raise ArtifactNotFound(f"dataset {fconf['dataset']} the factors were fit on is not in the workspace",
                                   hint="pass the training data with --data")
        dataset = fit_dataset
    else:
        dataset = resolve_dataset(ws, data_ref, mref, fconf.get("seq_len"), dinfo, reporter=reporter if dinfo.main else NULL) \
            if is_source_ref(data_ref) else ws.resolve(data_ref, "datasets")
        if dataset.config.get("tokenizer") != fconf.get("tokenizer", mref.tokenizer):
            raise IfguideError(f"dataset {dataset.id} was tokenized with {dataset.config.get('tokenizer')!r}, the factors' model "
                               f"uses {fconf.get('tokenizer')!r}", exit_code=2)
    corpus = load_corpus(dataset)
    n_rows, seq_len = corpus.shape
    if seq_len != fconf.get("seq_len"):
        raise IfguideError(f"dataset {dataset.id} has rows of {seq_len} tokens but factors {fart.id} were fit on rows of "
                           f"{fconf.get('seq_len')} tokens (dataset {fconf.get('dataset')})",
                           hint="score data tokenized like the factors' fit set (same --seq-len), or refit the factors on it",
                           exit_code=2)
    if n_rows < dinfo.world * cfg.partitions:
        raise IfguideError(f"{n_rows} training rows cannot be split into {cfg.partitions} partition(s) over "
                           f"{dinfo.world} process(es)", hint="use fewer --partitions or processes", exit_code=2)

    # queries
    tokenizer = load_tokenizer(mref)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    toxic = load_query_set(toxic_ref, tokenizer, seq_len, cfg.max_queries, cfg.query_seed, "toxic")
    safe = load_query_set(safe_ref, tokenizer, seq_len, cfg.max_queries, cfg.query_seed, "safe") if safe_ref else None
    queries = query_rows(toxic, safe, pad_id)
    if len(queries) < dinfo.world:
        raise IfguideError(f"{len(queries)} queries cannot be split over {dinfo.world} processes", exit_code=2)

    # damping: bf16 needs one that is not tiny relative to the curvature
    strategy = fconf["strategy"]
    if cfg.precision == "bf16" and cfg.damping is not None:
        rel = relative_damping(fdir, strategy, cfg.damping)
        if rel and min(rel.values()) < BF16_MIN_RELATIVE_DAMPING:
            worst = min(rel, key=rel.get)
            raise IfguideError(
                f"--damping {cfg.damping:g} is {rel[worst]:.1e} × the mean eigenvalue of {worst}: too small for bf16 "
                f"(bf16 scores then disagree with fp32; needs ≥ {BF16_MIN_RELATIVE_DAMPING:g} ×)",
                hint="omit --damping (kronfluence's heuristic, 0.1 × mean eigenvalue per module) or use --precision fp32",
                exit_code=2)

    model, modules, fingerprint = load_model_for_influence(mref, resolve_family(mref, ws, family_spec=fconf["family"]))
    if fingerprint != fconf.get("model_fingerprint") or modules != fconf.get("modules"):
        raise IfguideError(f"factors {fart.id} were fit on other weights than {_describe_model(mref.identity())} "
                           "(the model changed since, or the factors come from another model)",
                           hint="refit the factors for this model (`ifguide factors ...`)", exit_code=2)

    batch_size = cfg.batch_size or default_batch_size(seq_len)
    damping_label = "auto" if cfg.damping is None else cfg.damping
    config = {
        "factors": fart.id, "dataset": dataset.id, "model": mref.identity(), "model_fingerprint": fingerprint,
        "strategy": strategy, "toxic_queries": toxic.describe(), "safe_queries": safe.describe() if safe else None,
        "weights": "toxic +1/N_tox, safe -1/N_safe" if safe else "toxic +1/N_tox",
        "max_queries": cfg.max_queries, "query_seed": cfg.query_seed, "query_low_rank": cfg.query_low_rank,
        "damping": damping_label, "precision": cfg.precision, "factors_precision": fconf.get("precision"),
        "per_module": cfg.per_module, "measurement": "summed CE over continuation tokens", "alignment": ALIGNMENT,
    }
    parents = [fart.id, dataset.id]
    engine = InfluenceEngine(model, modules, dinfo, cfg.precision, debug=debug)
    info: dict = {"dataset": dataset.id, "factors": fart.id, "batch_size": batch_size, "partitions": cfg.partitions,
                  "device": _device_label(dinfo)}
    if fconf.get("precision") == "bf16":
        info["note"] = ("note: these factors were fit in bf16, which costs accuracy (scores ≈0.98 Spearman with fp32 on the "
                        "tiny test); fit the factors in fp32 and score in bf16 for the closest agreement")

    def build(ctx):
        kron_dir = ctx.staging / KRON_DIR
        out_file = ctx.staging / SCORES_FILE
        if dinfo.main:  # a result file half-written by a killed run is recomputed
            for path in (out_file, ctx.staging / MODULE_SCORES_FILE):
                if path.exists() and not _valid_safetensors(path):
                    path.unlink()
        barrier(dinfo)
        done = out_file.exists() and (not cfg.per_module or (ctx.staging / MODULE_SCORES_FILE).exists())
        train = TrainRows(corpus.input_ids, corpus.attention_mask)
        elapsed = 0.0
        if not done:
            note = prepare_staging(ctx.staging, {"partitions": cfg.partitions}, dinfo, kron_dir)
            if note:
                info["resume"] = note
            start = time.perf_counter()
            with ctx.timed("scores"):
                raw = engine.scores(ctx.staging, fdir, train, queries, damping=cfg.damping, per_module=cfg.per_module,
                                    batch_size=batch_size, query_batch_size=cfg.query_batch_size, partitions=cfg.partitions,
                                    query_low_rank=cfg.query_low_rank, reporter=reporter if dinfo.main else NULL)
            elapsed = time.perf_counter() - start
            if dinfo.main:
                aligned = {k: align_to_labels(v) for k, v in raw.items()}
                total = aligned["all_modules"] if "all_modules" in aligned else torch.stack(list(aligned.values())).sum(0)
                if cfg.per_module:
                    _atomic_save(save_file, {k: v.contiguous() for k, v in aligned.items()}, ctx.staging / MODULE_SCORES_FILE)
                _atomic_save(save_file, {"scores": total.contiguous()}, out_file)
                for p in kron_dir.rglob("pairwise_scores*.safetensors"):  # the raw copy; scores.safetensors replaces it
                    p.unlink()
                (ctx.staging / RUN_FILE).unlink(missing_ok=True)
            barrier(dinfo)
        if not dinfo.main:
            return {}
        from safetensors.torch import load_file

        total = load_file(str(out_file))["scores"]
        summary = _score_summary(total, corpus, toxic, safe, elapsed, dinfo)
        summary.update({"damping": damping_label, "precision": cfg.precision, "strategy": strategy, "batch_size": batch_size,
                        "partitions": cfg.partitions})
        hd = heuristic_damping(fdir, strategy) if cfg.damping is None else None
        if hd:
            summary["damping_heuristic_min"] = min(hd.values())
            summary["damping_heuristic_max"] = max(hd.values())
        return summary

    art, reused = ws.create("scores", config, parents, build, name=name, force=force, device=_device_label(dinfo))
    return StageResult(art, reused, info)


def _atomic_save(save_file, tensors: dict, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, path)


def _describe_model(identity: dict) -> str:
    if identity.get("source") == "checkpoint":
        return f"checkpoint {identity.get('artifact_id')}"
    return f"{identity.get('location')!r}"


def _score_summary(total, corpus, toxic: QuerySet, safe: QuerySet | None, elapsed: float, dinfo: DistInfo) -> dict:
    import numpy as np
    import torch

    n_rows, seq_len = total.shape
    label_mask = torch.zeros_like(corpus.attention_mask, dtype=torch.bool)
    label_mask[:, 1:] = corpus.attention_mask[:, 1:].bool()  # tokens that are predicted
    values = total[label_mask]
    sample = values
    if values.numel() > 1 << 22:
        gen = torch.Generator().manual_seed(0)
        sample = values[torch.randint(values.numel(), (1 << 22,), generator=gen)]
    summary = {
        "documents": n_rows, "seq_len": seq_len, "tokens": int(label_mask.sum()),
        "toxic_queries": len(toxic.pairs), "safe_queries": len(safe.pairs) if safe else 0,
        "dropped_empty_queries": toxic.dropped + (safe.dropped if safe else 0),
        "score_mean": float(values.double().mean()) if values.numel() else 0.0,
        "score_std": float(values.double().std()) if values.numel() > 1 else 0.0,
        "score_p99": float(np.quantile(sample.numpy(), 0.99)) if sample.numel() else 0.0,
        "score_max": float(values.max()) if values.numel() else 0.0,
        "positive_fraction": float((values > 0).double().mean()) if values.numel() else 0.0,
        "processes": dinfo.world,
    }
    if elapsed > 0:
        summary["seconds"] = round(elapsed, 3)
        summary["tokens_per_s"] = round(n_rows * seq_len / elapsed, 1)
    if corpus.planted_toxic is not None:
        doc_mean = (total * label_mask).sum(1) / label_mask.sum(1).clamp(min=1)
        planted = corpus.planted_toxic.bool()
        if planted.any() and (~planted).any():
            summary["planted_toxic_doc_mean"] = float(doc_mean[planted].mean())
            summary["clean_doc_mean"] = float(doc_mean[~planted].mean())
    return summary


# ---- reference: the two-run difference (tests, benchmark) ------------------------------------
def two_run_reference(engine: InfluenceEngine, output_dir: Path, factors_dir: Path, train: TrainRows, toxic: QuerySet,
                      safe: QuerySet, pad_id: int, *, damping: float | None, batch_size: int, query_batch_size: int = 16):
    """(toxic run with weights 1/N_tox) − (safe run with weights 1/N_safe), label-aligned (N, T)."""
    runs = []
    for name, qs in (("toxic_only", toxic), ("safe_only", safe)):
        rows = build_query_rows([(qs.ids, qs.n_prompt, 1.0 / len(qs.ids))], pad_id)
        raw = engine.scores(output_dir, factors_dir, train, rows, damping=damping, per_module=False, batch_size=batch_size,
                            query_batch_size=query_batch_size, partitions=1, name=name)
        runs.append(align_to_labels(raw["all_modules"]))
    return runs[0] - runs[1]
