"""Damping of the inverse curvature: kronfluence's heuristic, and the limit bf16 scoring needs.

``damping=None`` is kronfluence's heuristic, 0.1 × the mean eigenvalue of each module; it is the default
and what makes bf16 scores agree with fp32. An explicit damping below `BF16_MIN_RELATIVE_DAMPING` × a
module's mean eigenvalue is refused in bf16: the preconditioned gradient then loses its accuracy.
"""

from __future__ import annotations

import math
from pathlib import Path

from ..errors import IfguideError
from .config import BF16_MIN_RELATIVE_DAMPING


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


def check_bf16_damping(factors_dir: Path, strategy: str, precision: str, damping: float | None) -> None:
    """Refuse an explicit damping too small, relative to the curvature, for bf16 scores."""
    if precision != "bf16" or damping is None:
        return
    rel = relative_damping(factors_dir, strategy, damping)
    if rel and min(rel.values()) < BF16_MIN_RELATIVE_DAMPING:
        worst = min(rel, key=rel.get)
        raise IfguideError(
            f"--damping {damping:g} is {rel[worst]:.1e} × the mean eigenvalue of {worst}: too small for bf16 "
            f"(bf16 scores then disagree with fp32; needs ≥ {BF16_MIN_RELATIVE_DAMPING:g} ×)",
            hint="omit --damping (kronfluence's heuristic, 0.1 × mean eigenvalue per module) or use --precision fp32",
            exit_code=2)
