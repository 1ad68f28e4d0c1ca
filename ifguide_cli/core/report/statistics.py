"""Uncertainty of a comparison between two systems: paired bootstrap intervals, a paired test, spread over seeds.

Pure numpy functions of per-prompt and per-document numbers, deterministic for a given `seed`.

- The unit of resampling is the prompt (toxicity) or the held-out document (perplexity): the systems are
  evaluated on the same prompts and documents, so each bootstrap draw resamples the same units for both
  (a *paired* bootstrap); the prompt-to-prompt variation, which is most of the noise, cancels in the
  comparison. Intervals are percentile intervals of `draws` resamples (Efron & Tibshirani 1993, ch. 13).
- A prompt's value is its maximum toxicity over the sampled continuations (EMT: their mean; TP: the share
  ≥ 0.5). A system run over several seeds gives, per prompt, the mean over seeds of that value (for TP the
  share of seeds whose maximum is ≥ 0.5), so the point estimate is the mean of the seeds' EMT / TP and the
  interval is over prompts, the population the conclusion is about.
- The p-value is a paired sign-flip (randomisation) test of "the two systems are exchangeable on every
  prompt": under it each per-prompt difference is as likely negated, so the p-value is the share of sign
  patterns whose |mean difference| reaches the observed one. It needs no normality (the differences of
  maxima are bounded and skewed) and matches the paired bootstrap's unit. For 0/1 outcomes (TP of one seed
  against one seed) the sign-flip test *is* the exact McNemar test (only the discordant prompts move, each
  ±1 with probability ½), computed exactly from the binomial distribution; for other data it is enumerated
  exactly when at most `EXACT_MAX` prompts differ, and sampled (`draws` sign patterns) otherwise.
"""

from __future__ import annotations

import math

import numpy as np

from ifguide_cli.core.evaluation.metrics import THRESHOLD

LEVEL = 0.95
EXACT_MAX = 16  # at most this many non-zero differences: the sign-flip test enumerates all 2^m patterns
_CELLS = 2**20  # resampled values held at once (memory), per input column


def _num(x) -> float | None:
    """A JSON-safe number: None where a ratio is undefined (division by 0) instead of inf / nan."""
    x = float(x)
    return x if math.isfinite(x) else None


def _ratio(num, den):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(num, dtype=float) / np.asarray(den, dtype=float)


def percentile_interval(samples, level: float = LEVEL) -> list[float] | None:
    """The central `level` percentile interval of the finite samples (draws where a ratio is undefined, e.g. a
    resample whose control has TP 0, are left out); None when no draw is finite."""
    s = np.asarray(samples, dtype=float)
    s = s[np.isfinite(s)]
    if s.size == 0:
        return None
    tail = (1 - level) / 2
    return [float(v) for v in np.quantile(s, [tail, 1 - tail])]


def resampled_means(columns, *, draws: int, seed: int) -> np.ndarray:
    """Bootstrap means of each row of `columns` (k, n) over `draws` resamples of the n units; every row is
    resampled with the same indices (paired). Returns (k, draws). The indices are drawn in chunks whose size
    depends only on n, so the result depends only on (n, draws, seed), not on how many rows are resampled."""
    cols = np.atleast_2d(np.asarray(columns, dtype=float))
    n = cols.shape[1]
    rng = np.random.default_rng(seed)
    chunk = max(1, _CELLS // max(n, 1))
    out = np.empty((cols.shape[0], draws))
    for start in range(0, draws, chunk):
        size = min(chunk, draws - start)
        idx = rng.integers(0, n, size=(size, n))
        out[:, start:start + size] = cols[:, idx].mean(axis=-1)
    return out


def _estimate(value, samples, level: float = LEVEL) -> dict:
    return {"value": _num(value), "ci95": percentile_interval(samples, level)}


def paired_bootstrap(control, arm, *, draws: int = 2000, seed: int = 0) -> dict:
    """Means of per-unit values of two systems on the same units, with paired bootstrap intervals: each
    system's mean, the relative reduction 1 − arm/control (0: no change; 0.5: halved) and the ratio
    control/arm (the paper's "× reduction"). Non-finite ratios are None."""
    c, a = np.asarray(control, dtype=float), np.asarray(arm, dtype=float)
    if c.shape != a.shape or c.ndim != 1 or c.size == 0:
        raise ValueError(f"paired values need the same non-empty units; got {c.shape} and {a.shape}")
    mc, ma = resampled_means(np.stack([c, a]), draws=draws, seed=seed)
    pc, pa = c.mean(), a.mean()
    return {"control": _estimate(pc, mc), "arm": _estimate(pa, ma),
            "reduction": _estimate(1 - _ratio(pa, pc), 1 - _ratio(ma, mc)),
            "ratio": _estimate(_ratio(pc, pa), _ratio(mc, ma))}


def mcnemar_exact(better: int, worse: int) -> float:
    """Two-sided exact McNemar p-value from the discordant pairs (`better`: units where only the control was
    positive, `worse`: only the arm): 2·P(Bin(better + worse, ½) ≤ min), capped at 1; exact integer arithmetic."""
    m, k = better + worse, min(better, worse)
    if m == 0 or better == worse:
        return 1.0
    return min(1.0, 2 * sum(math.comb(m, i) for i in range(k + 1)) / 2**m)


def _flip_share(d: np.ndarray, observed: float, signs: np.ndarray) -> int:
    """How many sign patterns (rows of ±1) give a |sum| at least the observed one (with a rounding tolerance)."""
    tol = 1e-9 * float(np.abs(d).sum())
    return int((np.abs(signs @ d) >= observed - tol).sum())


def sign_flip_test(differences, *, draws: int = 10000, seed: int = 0) -> float:
    """Two-sided p-value of the paired sign-flip test on per-unit differences (see the module docstring):
    exact McNemar for differences in {−1, 0, 1}; all 2^m sign patterns of the m non-zero differences when
    m ≤ EXACT_MAX; else (1 + hits) / (1 + draws) over `draws` random patterns, which is never 0."""
    d = np.asarray(differences, dtype=float)
    d = d[d != 0]
    if d.size == 0:
        return 1.0
    if np.isin(d, (-1.0, 1.0)).all():
        return mcnemar_exact(int((d > 0).sum()), int((d < 0).sum()))
    observed = abs(float(d.sum()))
    m = d.size
    if m <= EXACT_MAX:
        patterns = np.arange(2**m)[:, None] >> np.arange(m) & 1
        return _flip_share(d, observed, 1 - 2 * patterns.astype(float)) / 2**m
    rng = np.random.default_rng(seed)
    chunk, hits = max(1, _CELLS // m), 0
    for start in range(0, draws, chunk):
        signs = 1 - 2 * rng.integers(0, 2, size=(min(chunk, draws - start), m)).astype(float)
        hits += _flip_share(d, observed, signs)
    return (1 + hits) / (1 + draws)


def prompt_values(maxima, threshold: float = THRESHOLD) -> dict[str, np.ndarray]:
    """Per prompt, from per-seed maxima (seeds, prompts): `emt` the mean maximum over seeds, `tp` the share of
    seeds whose maximum is ≥ threshold. Their means over prompts are the seeds' mean EMT and TP."""
    m = np.atleast_2d(np.asarray(maxima, dtype=float))
    return {"tp": (m >= threshold).mean(axis=0), "emt": m.mean(axis=0)}


def compare_toxicity(control_maxima, arm_maxima, *, draws: int = 2000, seed: int = 0) -> dict:
    """TP and EMT of the control and the arm (each (seeds, prompts) per-prompt maxima on the same prompts),
    with paired bootstrap intervals, the reduction and ratio, and the reduction's sign-flip p-value."""
    c, a = prompt_values(control_maxima), prompt_values(arm_maxima)
    if c["tp"].shape != a["tp"].shape:
        raise ValueError(f"paired values need the same prompts; got {c['tp'].size} and {a['tp'].size}")
    out = {}
    for metric in ("tp", "emt"):
        res = paired_bootstrap(c[metric], a[metric], draws=draws, seed=seed)
        res["reduction"]["p_value"] = sign_flip_test(c[metric] - a[metric], draws=draws, seed=seed)
        out[metric] = res
    return out


def perplexity_cost(control_nll, control_tokens, arm_nll, arm_tokens, *, draws: int = 2000, seed: int = 0) -> dict:
    """Perplexities exp(Σ NLL / Σ tokens) of the control and the arm on the same held-out documents and the
    cost arm/control − 1, with paired bootstrap intervals over documents. Each input is per document, or
    (seeds, documents): several seeds are averaged per document first (their perplexity is then the geometric
    mean of the seeds')."""
    cols = [np.atleast_2d(np.asarray(x, dtype=float)).mean(axis=0) for x in (control_nll, control_tokens, arm_nll, arm_tokens)]
    if len({c.size for c in cols}) != 1 or cols[0].size == 0:
        raise ValueError("paired perplexities need per-document values of the same non-empty documents")
    stack = np.stack(cols)

    def ppl(means):
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return np.exp(_ratio(means[0], means[1])), np.exp(_ratio(means[2], means[3]))

    pc, pa = ppl(stack.mean(axis=1))
    rc, ra = ppl(resampled_means(stack, draws=draws, seed=seed))
    return {"control": _estimate(pc, rc), "arm": _estimate(pa, ra), "cost": _estimate(_ratio(pa, pc) - 1, _ratio(ra, rc) - 1)}


def seed_spread(values) -> dict:
    """Mean, sample standard deviation (ddof 1; None for one seed) and range of a figure over seeds: how much
    the result moves with the seed, which the intervals over prompts do not show."""
    v = np.asarray([x for x in values if x is not None], dtype=float)
    if v.size == 0:
        return {"n": 0, "mean": None, "std": None, "min": None, "max": None}
    return {"n": int(v.size), "mean": _num(v.mean()), "std": _num(v.std(ddof=1)) if v.size > 1 else None,
            "min": _num(v.min()), "max": _num(v.max())}


ALPHA = 0.05  # a difference is called significant when its interval excludes 0 and its (corrected) p-value is below


def holm(p_values) -> list[float | None]:
    """Holm–Bonferroni adjusted p-values (Holm 1979) of several comparisons, in the order given; None stays None.
    The i-th smallest of m p-values is multiplied by m − i (i from 0), and the adjusted values are made
    non-decreasing in that order and capped at 1: a difference whose adjusted p is below α survives the
    correction with family-wise error ≤ α, whatever the dependence between the comparisons."""
    known = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    out: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(known):
        running = max(running, min(1.0, (len(known) - rank) * p))
        out[i] = running
    return out


def excludes_zero(interval) -> bool:
    """Whether an interval [low, high] lies entirely on one side of 0 (None: no interval, so no)."""
    return interval is not None and (interval[0] > 0 or interval[1] < 0)
