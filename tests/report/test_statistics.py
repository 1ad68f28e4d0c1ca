"""core/statistics: paired bootstrap, the sign-flip / McNemar test and the perplexity cost on hand-made data
whose answers are known exactly."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from ifguide_cli.core.report import statistics as st


def _maxima(n=40, seed=3, low=0.0, high=1.0):
    return np.random.default_rng(seed).uniform(low, high, size=(1, n))


def test_identical_arms_reduce_nothing_with_certainty():
    c = _maxima()
    res = st.compare_toxicity(c, c.copy(), draws=500, seed=1)
    for metric in ("tp", "emt"):
        red = res[metric]["reduction"]
        assert red["value"] == 0.0 and red["ci95"] == [0.0, 0.0] and red["p_value"] == 1.0
        assert res[metric]["ratio"]["value"] == 1.0
        assert res[metric]["control"] == res[metric]["arm"]  # same resamples of the same values
    lo, hi = res["emt"]["control"]["ci95"]
    assert lo < float(c.mean()) < hi


def test_halving_every_prompt_is_a_reduction_of_exactly_one_half():
    c = _maxima(low=0.6)  # every prompt toxic; halved, none is
    res = st.compare_toxicity(c, c / 2, draws=500, seed=2)
    emt = res["emt"]
    assert emt["reduction"]["value"] == 0.5 and emt["reduction"]["ci95"] == [0.5, 0.5]
    assert emt["ratio"]["value"] == 2.0 and emt["ratio"]["ci95"] == [2.0, 2.0]
    assert emt["arm"]["value"] == pytest.approx(emt["control"]["value"] / 2)
    tp = res["tp"]
    assert tp["control"]["value"] == 1.0 and tp["arm"]["value"] == 0.0
    assert tp["reduction"]["value"] == 1.0 and tp["ratio"]["value"] is None  # control/0: undefined, not inf
    assert tp["reduction"]["p_value"] == 2 / 2**40  # exact McNemar: 40 discordant prompts, all one way


def test_sign_flip_p_value_by_hand_and_by_enumeration():
    # d = (1, 2, 3): of the 8 sign patterns only (+,+,+) and (−,−,−) reach |sum| = 6
    assert st.sign_flip_test([1.0, 2.0, 3.0]) == 0.25
    assert st.sign_flip_test([0.5, 0.25, 0.0]) == 0.5  # zeros drop out: ±0.5 ± 0.25, two of four reach 0.75
    assert st.sign_flip_test([0.1, 0.2, -0.3]) == 1.0  # observed mean 0: every pattern reaches it
    d = np.random.default_rng(0).normal(0.1, 0.3, size=10)
    brute = sum(abs(sum(s * x for s, x in zip(signs, d, strict=True))) >= abs(d.sum()) - 1e-12
                for signs in itertools.product((1, -1), repeat=10)) / 2**10
    assert st.sign_flip_test(d) == brute


def test_mcnemar_is_the_sign_flip_test_of_binary_outcomes():
    assert st.mcnemar_exact(5, 0) == 0.0625  # 2 · (1/2)^5
    assert st.mcnemar_exact(3, 1) == 2 * (1 + 4) / 16
    assert st.mcnemar_exact(2, 2) == 1.0 and st.mcnemar_exact(0, 0) == 1.0
    # TP per prompt of one seed each: control toxic on 6 prompts where the arm is not, the reverse on 1
    control = np.array([[0.9] * 6 + [0.1] + [0.7] * 3 + [0.2] * 5])
    arm = np.array([[0.1] * 6 + [0.9] + [0.8] * 3 + [0.3] * 5])
    assert st.compare_toxicity(control, arm)["tp"]["reduction"]["p_value"] == st.mcnemar_exact(6, 1) == 2 * 8 / 128


def test_sampled_sign_flip_is_deterministic_and_never_zero():
    d = np.full(40, 0.3)  # 40 equal non-binary differences: the sampled patterns never reach all-positive
    assert st.sign_flip_test(d, draws=999, seed=0) == 1 / 1000
    noise = np.random.default_rng(5).normal(0, 0.2, size=60)
    p = st.sign_flip_test(noise, draws=2000, seed=7)
    assert p == st.sign_flip_test(noise, draws=2000, seed=7) and 0.05 < p <= 1


def test_bootstrap_pairs_rows_and_depends_only_on_units_draws_and_seed():
    x = np.random.default_rng(1).random(30)
    both = st.resampled_means(np.stack([x, x + 1.0]), draws=300, seed=4)
    assert np.allclose(both[1] - both[0], 1.0)  # the same prompts in every draw
    assert np.allclose(st.resampled_means(x, draws=300, seed=4)[0], both[0], rtol=1e-14, atol=0)
    assert not np.allclose(st.resampled_means(x, draws=300, seed=5)[0], both[0])
    lo, hi = st.paired_bootstrap(x, x, draws=2000, seed=0)["control"]["ci95"]
    se = x.std() / math.sqrt(x.size)
    assert lo < x.mean() < hi and hi - lo == pytest.approx(2 * 1.96 * se, rel=0.2)


def test_undefined_ratios_are_left_out_of_the_interval():
    assert st.percentile_interval([np.inf, np.nan]) is None
    assert st.percentile_interval([1.0, np.inf, 3.0], level=1.0) == [1.0, 3.0]
    res = st.paired_bootstrap(np.zeros(5), np.zeros(5), draws=50)
    assert res["reduction"] == {"value": None, "ci95": None} and res["control"]["value"] == 0.0
    with pytest.raises(ValueError):
        st.paired_bootstrap([0.1, 0.2], [0.1], draws=10)


def test_prompt_values_average_seeds_per_prompt():
    v = st.prompt_values([[0.6, 0.2, 0.5], [0.4, 0.2, 0.9]])
    assert v["tp"].tolist() == [0.5, 0.0, 1.0] and v["emt"].tolist() == pytest.approx([0.5, 0.2, 0.7])


def test_perplexity_cost_on_hand_made_documents():
    nll, tokens = np.array([10.0, 20.0, 30.0, 7.0]), np.array([5.0, 5.0, 5.0, 2.0])
    res = st.perplexity_cost(nll, tokens, nll * 1.1, tokens, draws=200)
    assert res["control"]["value"] == pytest.approx(math.exp(67 / 17))
    assert res["cost"]["value"] == pytest.approx(math.exp(6.7 / 17) - 1)
    lo, hi = res["cost"]["ci95"]
    assert lo < res["cost"]["value"] < hi
    # +0.2 nats on every token of every document: the cost is exp(0.2) − 1 in every resample; two seeds at
    # +0.1 and +0.3 average per document to the same
    shifted = st.perplexity_cost(nll, tokens, [nll + 0.1 * tokens, nll + 0.3 * tokens], [tokens, tokens], draws=200)
    assert shifted["cost"]["value"] == pytest.approx(math.exp(0.2) - 1)
    assert shifted["cost"]["ci95"] == pytest.approx([math.exp(0.2) - 1] * 2)
    with pytest.raises(ValueError):
        st.perplexity_cost(nll, tokens, nll[:3], tokens[:3])


def test_seed_spread():
    assert st.seed_spread([0.1, 0.3, 0.2]) == pytest.approx({"n": 3, "mean": 0.2, "std": 0.1, "min": 0.1, "max": 0.3})
    assert st.seed_spread([0.4])["std"] is None and st.seed_spread([None])["n"] == 0
