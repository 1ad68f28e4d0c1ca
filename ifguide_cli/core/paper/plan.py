"""What the paper's run costs: tokens per stage, GPU-hours on one H100, disk.

Rates come from throughput measured once on one H100 during this tool's development (bf16, Pythia-160M
architecture, 512 × 2,048 tokens, kronfluence 1.0.1; `python benchmarks/influence.py --size 160m --docs 512
--seq-len 2048 --precision bf16` and `benchmarks/train.py --size pythia-160m` re-measure them on a GPU)
and are scaled to other models by parameter count: tokens/s × parameters is taken as constant, i.e. the
cost per token grows linearly with the parameters (6N FLOPs per token for forward+backward). That is the
first-order rule; attention and kernel efficiency make larger models somewhat faster than it says.
Evaluation has no measured anchor: it is counted as forward-only tokens at 3× the forward+backward rate
(2N vs 6N FLOPs), a lower bound because sampling 20 tokens is latency-bound.
With a proxy model (`ProxySizes`, IF-Guide §5) the factors, query gradients and scores run at the proxy's rate,
its training is a stage of its own, and `Plan.proxy_saving` compares that with scoring on the target.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

# tokens/s on one H100 (bf16, Pythia-160M architecture): forward+backward, EK-FAC factors (all three passes),
# one-pass differential scores, a plain bf16 AdamW training step (8 × 2048 tokens, 32% MFU)
ANCHORS = {"forward_backward": 254_000, "factors": 34_000, "scores": 123_000, "train": 260_000}
ANCHOR_MODEL = "pythia-160m"
FORWARD_SPEEDUP = 3.0  # forward-only vs forward+backward: an assumption (FLOP ratio), not measured


@dataclass(frozen=True)
class Arch:
    """The shapes that set a model's parameter count and its EK-FAC factor sizes."""

    family: str  # gpt_neox | llama
    hidden: int
    layers: int
    intermediate: int
    vocab: int = 50_304  # the Pythia tokenizer's (the reference trains Llama with it too)
    kv_hidden: int | None = None  # llama: key/value width (grouped-query attention)
    tied: bool = False  # input and output embeddings shared

    def linear_shapes(self) -> list[tuple[int, int, bool]]:
        """(fan_in, fan_out, bias) of every Linear the influence stages track (the reference's modules)."""
        d, ff = self.hidden, self.intermediate
        if self.family == "gpt_neox":
            layer = [(d, 3 * d, True), (d, d, True), (d, ff, True), (ff, d, True)]
        else:
            kv = self.kv_hidden or d
            layer = [(d, d, False), (d, kv, False), (d, kv, False), (d, d, False),
                     (d, ff, False), (d, ff, False), (ff, d, False)]
        return layer * self.layers

    @property
    def params(self) -> int:
        d = self.hidden
        linear = sum(i * o + (o if bias else 0) for i, o, bias in self.linear_shapes())
        norms = (4 * d if self.family == "gpt_neox" else 2 * d) * self.layers + (2 * d if self.family == "gpt_neox" else d)
        return linear + norms + self.vocab * d * (1 if self.tied else 2)


ARCHS = {
    "pythia-160m": Arch("gpt_neox", 768, 12, 3_072),
    "pythia-410m": Arch("gpt_neox", 1_024, 24, 4_096),
    "pythia-1b": Arch("gpt_neox", 2_048, 16, 8_192),
    "pythia-2.8b": Arch("gpt_neox", 2_560, 32, 10_240),
    "pythia-2.8b-deduped": Arch("gpt_neox", 2_560, 32, 10_240),
    "llama-3.2-1b": Arch("llama", 2_048, 16, 8_192, kv_hidden=512, tied=True),
    # not in the paper: the size users point the tool at next (Llama-3.1-8B's published config), for estimates
    "llama-3.1-8b": Arch("llama", 4_096, 32, 14_336, vocab=128_256, kv_hidden=1_024),
}


def arch(model: str | Arch) -> Arch:
    """The recorded shapes of a model name (an Arch is returned as is)."""
    if isinstance(model, Arch):
        return model
    if model not in ARCHS:
        raise ValueError(f"no architecture on record for {model!r} (known: {', '.join(ARCHS)})")
    return ARCHS[model]


def rate(stage: str, model: str | Arch) -> float:
    """Tokens/s of an anchored stage for `model` on one H100, scaled by parameter count."""
    return ANCHORS[stage] * arch(ANCHOR_MODEL).params / arch(model).params


def factor_bytes(model: str | Arch, bytes_per_value: int = 2) -> int:
    """Disk size of EK-FAC factors: per tracked Linear, the activation and gradient covariances, their
    eigenvectors and eigenvalues, and the eigenvalue-corrected Lambda ((in + bias) × out)."""
    total = 0
    for fan_in, fan_out, bias in arch(model).linear_shapes():
        a, g = fan_in + int(bias), fan_out
        total += 2 * a * a + 2 * g * g + a + g + a * g
    return total * bytes_per_value


@dataclass(frozen=True)
class ProxySizes:
    """`influence.proxy`: the smaller model the factors and scores run on (IF-Guide §5 scores with Pythia-160M for
    1B-class targets), and the run that trains it from scratch on the run's data (`steps` 0: a checkpoint taken as
    it is, nothing trained)."""

    model: str
    steps: int = 0
    batch: int = 256
    eval_rows: int = 0  # validation rows evaluated every `eval_steps` while it trains (0: none)
    eval_steps: int = 250
    save_steps: int = 250
    save_total_limit: int = 2
    weight_bytes: int = 4  # fp32 weights (the `paper` profile's default)
    micro_batch: int = 8

    @property
    def trained(self) -> bool:
        return self.steps > 0


@dataclass(frozen=True)
class PlanInputs:
    """The run's sizes; the defaults are the reference's pre-training run (`PlanInputs.paper()`)."""

    preset: str = "paper"
    scenario: str = "pretrain"  # pretrain: baseline + IF-Guide trained from scratch; finetune: control + IF-Guide
    model: str = "pythia-160m"
    rows: int = 488_282  # training chunks
    seq_len: int = 2_048
    train_steps: int = 7_628  # per trained model
    batch: int = 256  # sequences per step
    eval_rows: int = 24_415  # validation chunks evaluated every `eval_steps` during training (0: none)
    eval_steps: int = 500
    save_steps: int = 500
    save_total_limit: int = 8
    queries: int = 19_785 + 64_327
    query_tokens: int = 256  # queries are padded to 256 tokens
    prompts: int = 10_000
    samples: int = 25
    new_tokens: int = 20
    prompt_tokens: int = 256  # prompts are left-padded to 256 tokens
    ppl_rows: int = 4_883
    lambada_rows: int = 4_860
    lambada_tokens: int = 512  # passages are left-padded to 512 tokens
    factor_value_bytes: int = 2  # bf16 factors
    score_value_bytes: int = 4  # float32 per-token scores
    weight_bytes: int = 2  # bf16 weights (and AdamW state in the same dtype)
    micro_batch: int = 8  # sequences per GPU per forward (the reference's per-device batch)
    lora_rank: int = 0  # the IF-Guide model's LoRA rank (0: every weight trained)
    gradient_checkpointing: bool = False
    fsdp: int = 1  # GPUs the training state is sharded over (1: none)
    gpus: int = 1
    arms: int = 0  # `run` arms beside the control (0: the paper's two-model run)
    seeds: int = 1  # every fine-tune of an arms run is repeated per seed
    score_passes: int = 1  # one-pass scores per run: 2 when standard influence is an arm too
    score_blocks: int = 1  # `scores --partitions` blocks × `--shard` jobs: each repeats the query gradient pass
    shards: int = 1  # `scores --shard I/N` jobs the scoring is split into (all N counted)
    factor_rows: int | None = None  # rows the factors are fit on (`factors --max-examples`; None: all)
    scored_rows: int | None = None  # rows the scores stage scores (`scores --max-rows`; None: all)
    proxy: ProxySizes | None = None  # the model the influence stages run on, when it is not `model`
    notes: tuple[str, ...] = ()  # how sizes the pipeline does not give were chosen (added to the assumptions)

    @classmethod
    def paper(cls, **changes) -> PlanInputs:
        return replace(cls(), **changes)

    @classmethod
    def paper_finetune(cls, **changes) -> PlanInputs:
        return replace(cls(preset="paper-finetune", scenario="finetune", model="pythia-2.8b-deduped", train_steps=2_000,
                           eval_rows=0, save_steps=250, save_total_limit=2), **changes)

    @property
    def compared_models(self) -> int:
        """The models trained from the baseline's data and compared: IF-Guide (with a control when fine-tuning), or the
        control and every arm over the seeds."""
        if self.arms:
            return (1 + self.arms) * self.seeds
        return 1 if self.scenario == "pretrain" else 2

    @property
    def trained_models(self) -> int:
        return self.compared_models + (1 if self.scenario == "pretrain" else 0)  # pretrain: the baseline too

    @property
    def evaluated_models(self) -> int:
        return self.compared_models + 1  # and the baseline

    @property
    def scorer(self) -> str:
        """The model the factors, query gradients and scores run on: the proxy, else the trained model."""
        return self.proxy.model if self.proxy is not None else self.model


@dataclass(frozen=True)
class Stage:
    name: str
    tokens: int  # tokens the stage processes (data tokens; a three-pass stage counts them once)
    tokens_per_s: float | None  # on one H100; None: no GPU work worth counting
    basis: str
    model: str | None = None  # the model it runs (None: no model, e.g. the mask)

    @property
    def gpu_hours(self) -> float:
        return self.tokens / self.tokens_per_s / 3600 if self.tokens_per_s else 0.0


@dataclass(frozen=True)
class Need:
    name: str
    bytes: int | None  # None: not known in advance
    note: str = ""


@dataclass(frozen=True)
class Plan:
    inputs: PlanInputs
    stages: tuple[Stage, ...]
    disk: tuple[Need, ...]
    assumptions: tuple[str, ...]

    @property
    def gpu_hours(self) -> float:
        return sum(s.gpu_hours for s in self.stages)

    @property
    def wall_hours(self) -> float:
        return self.gpu_hours / self.inputs.gpus

    def rows(self) -> list[dict]:
        """One display row per stage, then the total (strings, for a table)."""
        out = [{"stage": s.name, "model": s.model or "-", "tokens": human(s.tokens),
                "tokens/s (H100)": human(s.tokens_per_s) if s.tokens_per_s else "-", "GPU-hours": f"{s.gpu_hours:,.1f}",
                "basis": s.basis} for s in self.stages]
        out.append({"stage": "total", "model": "", "tokens": human(sum(s.tokens for s in self.stages)), "tokens/s (H100)": "",
                    "GPU-hours": f"{self.gpu_hours:,.1f}",
                    "basis": f"{self.wall_hours:,.1f} h wall on {self.inputs.gpus} GPU(s), scaling linearly"})
        return out

    def disk_rows(self) -> list[dict]:
        return [{"item": n.name, "size": "unknown" if n.bytes is None else human(n.bytes, "B"), "note": n.note}
                for n in self.disk]

    def proxy_saving(self) -> dict | None:
        """What scoring with the proxy saves against scoring with the trained model itself (IF-Guide §5's efficiency
        claim): GPU-hours of factors, query gradients and scores on the target, vs on the proxy plus training it."""
        p = self.inputs
        if p.proxy is None:
            return None
        target = sum(s.gpu_hours for s in _influence(p, p.model))
        influence = sum(s.gpu_hours for s in _influence(p, p.proxy.model))
        training = sum(s.gpu_hours for s in _proxy_training(p))
        return {"proxy": p.proxy.model, "target": p.model, "proxy_trained": p.proxy.trained,
                "target_gpu_hours": round(target, 3), "proxy_gpu_hours": round(influence, 3),
                "proxy_training_gpu_hours": round(training, 3), "saved_gpu_hours": round(target - influence - training, 3)}

    def saving_line(self) -> str | None:
        """The proxy's saving in words (None without a proxy)."""
        x = self.proxy_saving()
        if x is None:
            return None
        spent = x["proxy_gpu_hours"] + x["proxy_training_gpu_hours"]
        training = f" + training it {x['proxy_training_gpu_hours']:,.1f}" if x["proxy_trained"] else " (taken, not trained)"
        return (f"proxy {x['proxy']}: factors, query gradients and scores {x['proxy_gpu_hours']:,.1f} GPU-h{training} = "
                f"{spent:,.1f} GPU-h, vs {x['target_gpu_hours']:,.1f} GPU-h on {x['target']}: saves "
                f"{x['saved_gpu_hours']:,.1f} GPU-h ({x['target_gpu_hours'] / spent:.1f}× less)")

    def to_json(self) -> dict:
        return {"preset": self.inputs.preset, "scenario": self.inputs.scenario, "model": self.inputs.model,
                "params": arch(self.inputs.model).params, "gpus": self.inputs.gpus, "scorer": self.inputs.scorer,
                "stages": [{"name": s.name, "model": s.model, "tokens": s.tokens, "tokens_per_s": s.tokens_per_s,
                            "gpu_hours": round(s.gpu_hours, 3), "basis": s.basis} for s in self.stages],
                "gpu_hours": round(self.gpu_hours, 3), "wall_hours": round(self.wall_hours, 3),
                "disk": [{"name": n.name, "bytes": n.bytes, "note": n.note} for n in self.disk],
                "assumptions": list(self.assumptions), "proxy": self.proxy_saving()}


def human(value: float, unit: str = "") -> str:
    """1234567 -> '1.23M' (bytes in decimal units: 4.00 GB)."""
    for scale, suffix in ((1e12, "T"), (1e9, "G" if unit else "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.2f} {suffix}{unit}" if unit else f"{value / scale:.2f}{suffix}"
    return f"{value:,.0f} {unit}".rstrip()


def _anchored(model: str) -> str:
    return f"measured on Pythia-160M, × {arch(ANCHOR_MODEL).params / arch(model).params:.3g} for {model}"


def _stages(p: PlanInputs) -> tuple[Stage, ...]:
    m = p.model
    train_tokens = p.train_steps * p.batch * p.seq_len
    forward = FORWARD_SPEEDUP * rate("forward_backward", m)
    stages = [*_proxy_training(p), *_influence(p, p.scorer), Stage("mask (CPU)", p.rows * p.seq_len, None, "reads the scores; no GPU"),
              Stage(f"train {_compared(p)} ({p.train_steps:,} steps{' each' if p.compared_models > 1 else ''})",
                    p.compared_models * train_tokens, rate("train", m), _anchored(m), m)]
    if p.scenario == "pretrain":
        stages.insert(0, Stage(f"train baseline ({p.train_steps:,} steps)", train_tokens, rate("train", m), _anchored(m), m))
    if p.eval_rows:
        checks = p.trained_models * (p.train_steps // p.eval_steps)
        stages.append(Stage(f"validation during training ({checks} passes)", checks * p.eval_rows * p.seq_len, forward,
                            "assumed: forward-only at 3× forward+backward", m))
    per_model = p.prompts * p.samples * (p.prompt_tokens + p.new_tokens) + p.ppl_rows * p.seq_len + p.lambada_rows * p.lambada_tokens
    stages.append(Stage(f"evaluation ({p.evaluated_models} models)", p.evaluated_models * per_model, forward,
                        "assumed: forward-only at 3× forward+backward; a lower bound (sampling is latency-bound)", m))
    return tuple(stages)


def _influence(p: PlanInputs, model: str) -> list[Stage]:
    """Factors, query gradients and per-token scores, run on `model`."""
    passes = f" × {p.score_passes}" if p.score_passes > 1 else ""
    blocks = f" × {p.score_blocks} blocks" if p.score_blocks > 1 else ""
    shards = f", {p.shards} shard jobs" if p.shards > 1 else ""
    fit = "all rows" if p.factor_rows is None else f"{p.factor_rows:,} rows"
    scored = p.rows if p.scored_rows is None else p.scored_rows
    return [
        Stage(f"EK-FAC factors (3 passes, {fit})", (p.factor_rows or p.rows) * p.seq_len, rate("factors", model),
              _anchored(model), model),
        Stage(f"query gradients{passes}{blocks}", p.score_passes * p.score_blocks * p.queries * p.query_tokens,
              rate("forward_backward", model), _anchored(model), model),
        Stage(f"per-token scores (one pass{shards}){passes}", p.score_passes * scored * p.seq_len, rate("scores", model),
              _anchored(model), model),
    ]


def _proxy_training(p: PlanInputs) -> list[Stage]:
    """Training the proxy from scratch on the run's data, and its validation passes (none for a taken proxy)."""
    x = p.proxy
    if x is None or not x.trained:
        return []
    stages = [Stage(f"train proxy {x.model} ({x.steps:,} steps)", x.steps * x.batch * p.seq_len, rate("train", x.model),
                    _anchored(x.model), x.model)]
    checks = x.steps // x.eval_steps if x.eval_rows else 0
    if checks:
        stages.append(Stage(f"validation of the proxy ({checks} passes)", checks * x.eval_rows * p.seq_len,
                            FORWARD_SPEEDUP * rate("forward_backward", x.model), "assumed: forward-only at 3× forward+backward",
                            x.model))
    return stages


def _compared(p: PlanInputs) -> str:
    if p.arms:
        return f"control + {p.arms} arm(s) × {p.seeds} seed(s)"
    return "IF-Guide" if p.scenario == "pretrain" else "control + IF-Guide"


def _disk(p: PlanInputs) -> tuple[Need, ...]:
    tokens, params = p.rows * p.seq_len, arch(p.model).params
    kept = min(p.save_total_limit, p.train_steps // p.save_steps)
    resumable = params * p.weight_bytes * 3  # weights + AdamW's two moments in the weights' dtype
    shards = (Need(f"score shards ({p.shards} jobs)", tokens * p.score_value_bytes,
                   "sparse files holding their rows' scores, until removed after the merge"),) if p.shards > 1 else ()
    return (
        Need("hub download: OpenWebText chunks", None,
             "the whole train split (≥ 4,398,748 chunks × 2,048 tokens ≈ 9.0B tokens) is fetched to select 488,282"),
        Need("tokenized corpus", tokens * 5, "int32 token ids + uint8 attention mask"),
        *_proxy_disk(p),
        Need("EK-FAC factors", factor_bytes(p.scorer, p.factor_value_bytes), f"{p.scorer}, {p.factor_value_bytes}-byte values"),
        Need("per-token scores", tokens * p.score_value_bytes,
             f"{p.score_value_bytes}-byte values ({human(tokens * 2, 'B')} in bf16, {human(tokens * 4, 'B')} in float32)"),
        *shards,
        Need("mask", tokens, "one byte per token"),
        Need("checkpoints during training (peak)", p.trained_models * kept * resumable,
             f"{kept} kept per model × {human(resumable, 'B')} (weights + AdamW state)"),
        Need("final weights", p.trained_models * params * p.weight_bytes, f"{p.trained_models} models × {human(params * p.weight_bytes, 'B')}"),
    )


def _proxy_disk(p: PlanInputs) -> tuple[Need, ...]:
    """A trained proxy's checkpoints while it trains and its final weights (a taken one is on disk already)."""
    x = p.proxy
    if x is None or not x.trained:
        return ()
    weights = arch(x.model).params * x.weight_bytes
    kept = min(x.save_total_limit, x.steps // x.save_steps)
    return (Need("proxy checkpoints during training (peak)", kept * weights * 3,
                 f"{kept} kept × {human(weights * 3, 'B')} ({x.model}: weights + AdamW state)"),
            Need("proxy final weights", weights, f"{x.model}, {x.weight_bytes}-byte values"))


ASSUMPTIONS = (
    "rates: measured H100 anchors for Pythia-160M (bf16, 512 × 2,048 tokens), scaled by 160M / parameters",
    "evaluation: forward-only tokens at 3× the forward+backward rate (not measured; sampling makes it a lower bound); "
    "Detoxify scoring of 250,000 continuations per model is not counted",
    "several GPUs: wall time = GPU-hours / GPUs (data parallel, no communication cost)",
)


def build_plan(inputs: PlanInputs = PlanInputs()) -> Plan:
    """The plan of a run of these sizes (see `PlanInputs.paper()` / `.paper_finetune()`)."""
    if inputs.gpus < 1:
        raise ValueError("gpus must be at least 1")
    arch(inputs.model), arch(inputs.scorer)  # a clear error for a model without recorded shapes
    return Plan(inputs, _stages(inputs), _disk(inputs), ASSUMPTIONS + inputs.notes)


def plan_for(preset: str, gpus: int = 1) -> Plan:
    """The plan of the `paper` or `paper-finetune` preset on `gpus` H100s."""
    makers = {"paper": PlanInputs.paper, "paper-finetune": PlanInputs.paper_finetune}
    if preset not in makers:
        raise ValueError(f"no plan for preset {preset!r} (known: {', '.join(makers)})")
    return build_plan(makers[preset](gpus=gpus))
