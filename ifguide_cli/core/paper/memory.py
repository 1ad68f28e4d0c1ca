"""Peak GPU memory per stage, estimated before launching: will a 2.8B or 8B target fit an 80 GB GPU?

First-order accounting per GPU, every term stated (bytes):
- weights: parameters × bytes of the weight dtype (fp32 master weights under bf16 autocast: 4 bytes);
- gradients and AdamW's two moments: the TRAINED parameters × the weight dtype's bytes (all of them for a full
  fine-tune, only the adapters' r × (fan_in + fan_out) per adapted Linear for LoRA);
- activations kept for the backward pass: 34 × hidden bytes per token per layer in 16-bit (Korthikanti et al.,
  "Reducing Activation Recomputation in Large Transformer Models", 2022, Eq. 2 with flash/SDPA attention, which
  drops the sequence-quadratic term), twice that in fp32, plus the fp32 logits and their gradient;
- gradient checkpointing keeps only each layer's input (hidden × bytes per token per layer) and recomputes one
  layer at a time in the backward pass;
- FSDP (full shard over N GPUs) divides weights, gradients and optimizer state by N and adds one gathered
  layer; activations are per GPU and not divided;
- influence: `factors` holds the fp32 activation and gradient covariances of every tracked Linear and their
  eigendecomposition (kronfluence keeps them on the GPU); `scores` holds the eigenvectors, the eigenvalue
  corrections and the preconditioned query gradient (one fp32 value per tracked weight);
- evaluation (sampling): weights plus the key/value cache of the prompts and continuations.
Frameworks add workspace memory (CUDA context ~0.5 GB, allocator fragmentation): compare `total` with
about 90% of the card. These are estimates, not measurements.
"""

from __future__ import annotations

from dataclasses import dataclass

from ifguide_cli.core.paper.plan import Arch, arch

GIB = 1024**3
CONTEXT_BYTES = int(0.5 * GIB)  # CUDA context and library handles, per process
ACTIVATION_BYTES_PER_HIDDEN = 34  # per token per layer, 16-bit, flash attention (Korthikanti et al. 2022)


@dataclass(frozen=True)
class MemoryInputs:
    model: str | Arch
    weight_bytes: int = 2  # bf16 weights; 4 for fp32 (master weights)
    micro_batch: int = 8
    seq_len: int = 2_048
    lora_rank: int = 0
    fsdp: int = 1  # GPUs the weights, gradients and optimizer state are sharded over (1: no sharding)
    checkpointing: bool = False  # gradient checkpointing: keep each layer's input, recompute the rest
    eval_batch: int = 25  # sequences sampled at once (the paper's 25 samples per prompt)
    prompt_tokens: int = 256  # prompts left-padded to 256 tokens, as the reference does
    new_tokens: int = 20


def lora_parameters(a: Arch, rank: int) -> int:
    """Adapter parameters when every tracked Linear gets a rank-r adapter: r × (fan_in + fan_out) each."""
    return sum(rank * (i + o) for i, o, _ in a.linear_shapes()) if rank else 0


def _activations(a: Arch, m: MemoryInputs, *, training: bool, checkpointing: bool = False) -> int:
    """Kept for the backward pass (training: every layer; inference: one); influence never checkpoints (its hooks
    read every layer's activations and output gradients)."""
    tokens = m.micro_batch * m.seq_len
    per_layer = ACTIVATION_BYTES_PER_HIDDEN * a.hidden * (m.weight_bytes // 2)
    if not training:
        kept = tokens * per_layer  # inference keeps one layer at a time
    elif checkpointing:  # every layer's input (hidden values), plus one layer's full activations being recomputed
        kept = tokens * (a.layers * a.hidden * m.weight_bytes + per_layer)
    else:
        kept = tokens * a.layers * per_layer
    logits = tokens * a.vocab * 4 * (2 if training else 1)  # fp32 logits (+ their gradient)
    return kept + logits


def _sharded(n: int, m: MemoryInputs, a: Arch) -> int:
    if m.fsdp <= 1:
        return n
    largest_layer = sum(i * o for i, o, _ in a.linear_shapes()[: len(a.linear_shapes()) // a.layers]) * m.weight_bytes
    return n // m.fsdp + largest_layer


def _entry(weights: int, grads: int, optimizer: int, activations: int, other: int) -> dict[str, int]:
    parts = {"weights": weights, "gradients": grads, "optimizer": optimizer, "activations": activations, "other": other}
    return {**parts, "total": sum(parts.values()) + CONTEXT_BYTES}


def training(m: MemoryInputs) -> dict[str, int]:
    a = arch(m.model)
    trained = lora_parameters(a, m.lora_rank) or a.params
    weights = _sharded(a.params * m.weight_bytes, m, a) + lora_parameters(a, m.lora_rank) * m.weight_bytes
    grads = _sharded(trained * m.weight_bytes, m, a) if not m.lora_rank else trained * m.weight_bytes
    optimizer = _sharded(2 * trained * m.weight_bytes, m, a) if not m.lora_rank else 2 * trained * m.weight_bytes
    return _entry(weights, grads, optimizer, _activations(a, m, training=True, checkpointing=m.checkpointing), 0)


def _covariances(a: Arch) -> int:
    return sum(((i + int(b)) ** 2 + o**2) * 4 for i, o, b in a.linear_shapes())


def _tracked_weights(a: Arch) -> int:
    return sum((i + int(b)) * o for i, o, b in a.linear_shapes())


def factors(m: MemoryInputs) -> dict[str, int]:
    a = arch(m.model)
    # the covariances and, while they are decomposed, their eigenvectors; then the eigenvalue corrections
    other = 2 * _covariances(a) + _tracked_weights(a) * 4
    return _entry(_sharded(a.params * m.weight_bytes, m, a), 0, 0, _activations(a, m, training=True), other)


def scores(m: MemoryInputs) -> dict[str, int]:
    a = arch(m.model)
    # eigenvectors, eigenvalue corrections, the preconditioned query gradient, and the per-token score block
    other = _covariances(a) + 2 * _tracked_weights(a) * 4 + m.micro_batch * m.seq_len * 4
    return _entry(_sharded(a.params * m.weight_bytes, m, a), 0, 0, _activations(a, m, training=True), other)


def evaluation(m: MemoryInputs) -> dict[str, int]:
    a = arch(m.model)
    kv_width = a.kv_hidden or a.hidden
    kv_cache = 2 * a.layers * kv_width * m.eval_batch * (m.prompt_tokens + m.new_tokens) * m.weight_bytes
    logits = m.eval_batch * a.vocab * 4
    return _entry(a.params * m.weight_bytes, 0, 0, logits, kv_cache)


STAGES = {"train / finetune": training, "factors": factors, "scores": scores, "eval toxicity": evaluation}


def estimate(m: MemoryInputs) -> dict[str, dict[str, int]]:
    """Per stage: the estimated bytes of each part and the total, per GPU."""
    return {stage: fn(m) for stage, fn in STAGES.items()}
