"""Damping of the inverse curvature: kronfluence's heuristic, and what a small damping costs in bf16.

``damping=None`` is kronfluence's heuristic, 0.1 × the mean eigenvalue of each module; it is the default
and what makes bf16 scores agree with fp32. Any explicit damping is accepted (the reference ran
kronfluence's default 1e-8 in bf16); below `BF16_MIN_RELATIVE_DAMPING` × a module's mean eigenvalue the
bf16 preconditioned gradient loses its accuracy, and a warning says by how much and what it was measured
to cost.
"""

from __future__ import annotations

import math
from pathlib import Path

from ifguide_cli.core import notes
from ifguide_cli.core.influence.config import BF16_MIN_RELATIVE_DAMPING


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


# The reference scores in bf16 with kronfluence's default damping_factor=1e-8 (src/compute_scores.py:196,200 of
# the IF-Guide code). Measured once on an H100 during this tool's development (kronfluence 1.0.1, Pythia-160M
# architecture, 128 × 1024 tokens): bf16 vs fp32 per-token scores at that damping had Spearman 0.83 and shared 59%
# of fp32's top-1% tokens; with kronfluence's heuristic damping (0.1 × mean eigenvalue) in both, Spearman 0.98 and
# 82%. No script in benchmarks/ reproduces it yet (it needs a GPU).
BF16_MEASURED = ("Spearman 0.83 with fp32 and 59% of fp32's top-1% tokens "
                 "(measured on an H100, Pythia-160M architecture, 128 × 1024 tokens, damping 1e-8)")


def check_bf16_damping(factors_dir: Path, strategy: str, precision: str, damping: float | None) -> None:
    """Warn when an explicit damping is too small, relative to the curvature, for accurate bf16 scores."""
    if precision != "bf16" or damping is None:
        return
    rel = relative_damping(factors_dir, strategy, damping)
    small = {k: v for k, v in rel.items() if v < BF16_MIN_RELATIVE_DAMPING}
    if small:
        worst = min(small, key=lambda name: small[name])
        notes.warn(
            f"--damping {damping:g} in bf16 is below {BF16_MIN_RELATIVE_DAMPING:g} × the mean eigenvalue in {len(small)} of "
            f"{len(rel)} modules (down to {small[worst]:.1e} × in {worst}): bf16 scores then disagree with fp32; measured "
            f"at 1e-8: {BF16_MEASURED}. Omit --damping (kronfluence's heuristic) or use --precision fp32 to avoid it")
