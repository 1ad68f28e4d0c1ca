"""The eval stages' settings: one typed config per concern, each field declared once with its help and range.

The `eval` commands' options are generated from these (`cli/options.config_options`), and a bad value is
one error line however it arrives (CLI, pipeline file, Python call).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ifguide_cli.core.config import Config, Precision, param, resolve_precision
from ifguide_cli.core.errors import IfguideError

LambadaMetric = Literal["auto", "last-token", "whole-word", "both"]
LAMBADA_REFERENCE = "lambada-reference"  # the reference's 4,860-passage subset, scored by last-token accuracy


@dataclass(frozen=True)
class GenerationConfig(Config):
    """How continuations are sampled (nucleus sampling, top-k off); recorded in the eval's identity."""

    # at most 10,000: the paper samples 25 (§5.1); 2**62 would be accepted and then exhaust memory in `generate`
    samples: int = param(25, "Continuations per prompt.", low=1, high=10_000)
    max_new_tokens: int = param(20, "New tokens per continuation.", low=1)
    top_p: float = param(0.9, "Nucleus sampling (top-k is off).", low=0.0, high=1.0, low_open=True)
    seed: int = param(0, "Sampling seed (batch i uses seed + i).")
    batch_size: int = param(8, "Prompts per generate call (each with --samples rows).", low=1)


@dataclass(frozen=True)
class DefenseConfig(Config):
    """The decoding-time defense: none, or reward-augmented decoding with an installed reward model."""

    method: Literal["none", "rad"] = param("none", "Decoding-time defense: rad = reward-augmented decoding.", flag="--defense")
    reward_model: str | None = param(None, "RAD reward model artifact (default: the installed rad-reward).")
    beta: float = param(50.0, "RAD: logits − β·reward.", flag="--rad-beta", low=0.0)
    topk: int = param(20, "RAD: candidates re-ranked per step.", flag="--rad-topk", low=1)

    def check(self) -> None:
        if self.reward_model and self.method != "rad":
            raise IfguideError("--reward-model needs --defense rad", exit_code=2)

    def identity(self, reward_id: str | None = None) -> dict:
        if self.method == "none":
            return {"name": "none"}
        return {"name": "rad", "beta": self.beta, "topk": self.topk, "reward_model": reward_id}

    def label(self) -> str:
        return "none" if self.method == "none" else f"rad(β={self.beta:g},k={self.topk})"


@dataclass(frozen=True)
class FluencyConfig(Config):
    """What a fluency eval reads; unset data means the model's default (see `fluency_data`)."""

    ppl_data: str | None = param(None, "Held-out text (default: tiny-heldout for tiny-tokenizer models, else the last "
                                       "2,000 OpenWebText documents); owt-test = the paper's 4,883 pre-tokenized "
                                       "2,048-token chunks, scored whole.")
    ppl_split: str | None = param(None, "Split (slice syntax works: train[-2000:]).")
    ppl_docs: int | None = param(None, "Use at most this many documents.", low=1)
    lambada: str | None = param(None, "LAMBADA data (default: tiny-lambada for tiny-tokenizer models, else lambada; "
                                      f"{LAMBADA_REFERENCE} = the paper's 4,860 passages).")
    lambada_docs: int | None = param(None, "Use at most this many passages.", low=1)
    lambada_metric: LambadaMetric = param(
        "auto", "last-token (the reference's: the argmax before the last token is that token) | whole-word (greedy "
                f"decoding produces the whole last word) | both; auto = last-token on {LAMBADA_REFERENCE}, else whole-word.")
    no_ppl: bool = param(False, "Skip perplexity.")
    no_lambada: bool = param(False, "Skip LAMBADA.")
    batch_size: int = param(16, "Sequences per forward.", low=1)
    max_length: int | None = param(None, "Perplexity window (default: the model's context, ≤2048).", low=2)

    def lambada_metrics(self, lambada: str | None) -> tuple[str, ...]:
        """The LAMBADA metrics to compute on data `lambada`, the headline (`lambada_accuracy`) first."""
        if self.lambada_metric == "both":
            return ("last-token", "whole-word")
        if self.lambada_metric == "auto":
            return ("last-token",) if lambada == LAMBADA_REFERENCE else ("whole-word",)
        return (self.lambada_metric,)


@dataclass(frozen=True)
class RuntimeConfig(Config):
    """Where and in which precision the evaluated model runs."""

    device: str = param("auto", "auto | cpu | cuda[:N].")
    precision: Precision = param(
        "auto", "Model precision; auto = fp32 (evals keep full precision); bf16 and fp16 need a CUDA GPU.")

    def resolve(self) -> tuple[str, str]:
        """(device, concrete precision); `auto` is fp32 on every device, the precision evals always ran in."""
        from ifguide_cli.core.dist import resolve_device

        device = resolve_device(self.device)
        precision = "fp32" if self.precision == "auto" else resolve_precision(self.precision, device)
        return device, precision
