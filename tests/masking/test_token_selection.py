"""Alg. 1 (toxic-token selection): the vectorised implementation against a plain per-token reference loop."""

from __future__ import annotations

import numpy as np
import pytest

from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.masking import (
    MaskConfig,
    load_scores,
    quantile,
    select_toxic_tokens,
)


def reference_mask(scores: np.ndarray, p: float, w: int, budget: int, valid: np.ndarray | None = None):
    """The reference script's loop, token by token (plus the documented normalisation guard and `valid`)."""
    docs, seq_len = scores.shape
    if valid is None:
        valid = np.ones(scores.shape, dtype=bool)
    tau = np.quantile(scores[valid], p)  # flat copy of the valid scores, numpy's default linear method

    s = np.zeros(docs)
    f = np.zeros(docs)
    for i in range(docs):
        above = (scores[i] > tau) & valid[i]
        s[i] = above.sum()
        f[i] = scores[i][above].astype(np.float64).sum()

    def minmax(x):
        lo, hi = min(x), max(x)
        return [(v - lo) / (hi - lo) if hi > lo else 0.0 for v in x]

    sn, fn = minmax(list(s)), minmax(list(f))
    h = [2.0 * a * b / (a + b) if a + b > 0 else 0.0 for a, b in zip(sn, fn, strict=True)]
    ranking = sorted(range(docs), key=lambda i: (-h[i], i))

    mask = np.zeros(scores.shape, dtype=bool)
    used = 0
    for i in ranking:
        for t in range(seq_len):
            if not (scores[i, t] > tau and valid[i, t]):
                continue
            start, end = max(0, t - w), min(seq_len, t + w + 1)
            new = ~mask[i, start:end] & valid[i, start:end]
            n_new = int(new.sum())
            if used + n_new > budget:
                return mask, np.array(ranking), tau
            mask[i, start:end] |= new
            used += n_new
    return mask, np.array(ranking), tau


def _random_case(rng: np.random.Generator, k: int):
    docs = int(rng.integers(1, 12))
    seq_len = int(rng.integers(1, 40))
    kind = k % 8
    if kind == 0:  # heavy ties: small integer scores
        scores = rng.integers(-2, 3, size=(docs, seq_len)).astype(np.float32)
    elif kind == 1:  # all equal
        scores = np.full((docs, seq_len), rng.standard_normal(), dtype=np.float32)
    elif kind == 2:  # padded zeros at the end like kronfluence output
        scores = rng.standard_normal((docs, seq_len)).astype(np.float32)
        lengths = rng.integers(0, seq_len + 1, size=docs)
        scores[np.arange(seq_len)[None, :] >= lengths[:, None]] = 0.0
    elif kind == 3:  # float64, wide dynamic range
        scores = rng.standard_normal((docs, seq_len)) * 10.0 ** rng.integers(-8, 8, size=(docs, seq_len))
    elif kind == 4:  # a few planted hot documents
        scores = rng.standard_normal((docs, seq_len)).astype(np.float32) * 0.1
        hot = rng.choice(docs, size=max(1, docs // 3), replace=False)
        scores[hot] += rng.random((hot.size, seq_len)).astype(np.float32) * 3
    elif kind == 5:  # all negative, tiny scale
        scores = -np.abs(rng.standard_normal((docs, seq_len))).astype(np.float32) * 1e-7
    elif kind == 6:  # float16
        scores = rng.standard_normal((docs, seq_len)).astype(np.float16)
    else:
        scores = rng.standard_normal((docs, seq_len)).astype(np.float32)
    p = float(rng.choice([0.0, 0.5, 0.7, 0.8, 0.9, 0.99, 1.0, rng.random()]))
    w = int(rng.choice([0, 0, 1, 1, 2, 3, 9, 12, 50]))
    budget = int(rng.choice([0, 1, 2, 5, int(rng.integers(0, docs * seq_len + 1)), 10**9]))
    valid = None
    if k % 5 == 0:
        valid = rng.random((docs, seq_len)) < 0.8
        if not valid.any():
            valid[0, 0] = True
    return scores, p, w, budget, valid


@pytest.mark.parametrize("seed", range(6))
def test_vectorised_equals_reference_loop(seed):
    rng = np.random.default_rng(seed)
    for k in range(60):  # 6 × 60 = 360 random cases
        scores, p, w, budget, valid = _random_case(rng, k)
        ref_mask, ref_rank, ref_tau = reference_mask(scores, p, w, budget, valid)
        chunk = int(rng.choice([1, 7, 64, 1 << 22]))  # chunking must not matter
        res = select_toxic_tokens(scores, MaskConfig(p, w, budget), valid, chunk_elements=chunk)
        ctx = f"case {k}: shape={scores.shape} dtype={scores.dtype} p={p} w={w} budget={budget} valid={valid is not None}"
        assert res.threshold_value == float(ref_tau), ctx
        np.testing.assert_array_equal(res.ranking, ref_rank, err_msg=ctx)
        np.testing.assert_array_equal(res.mask, ref_mask, err_msg=ctx)
        assert res.tokens_selected == int(ref_mask.sum()) <= budget, ctx
        np.testing.assert_array_equal(res.selected_counts, ref_mask.sum(axis=1), err_msg=ctx)
        assert res.documents_selected == int(ref_mask.any(axis=1).sum()), ctx


def test_edge_cases_explicitly():
    scores = np.array([[0.0, 5.0, 0.0, 0.0, 6.0], [1.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 7.0, 0.0, 0.0]], np.float32)
    # p = 0.8 over 15 values: τ = lerp(sorted[11]=1, sorted[12]=5, 0.2) = 1.8; above: 5, 6, 7
    res = select_toxic_tokens(scores, MaskConfig(0.8, 1, 100))
    assert res.threshold_value == float(np.quantile(scores, 0.8))
    assert list(res.sparsity) == [2, 0, 1]
    assert list(res.ranking) == [0, 2, 1]
    assert res.mask[0].tolist() == [True] * 5 and res.mask[2].tolist() == [False, True, True, True, False]
    assert not res.mask[1].any() and res.tokens_selected == 8 and res.stopped_at_rank is None
    # w = 0: only the tokens themselves
    assert select_toxic_tokens(scores, MaskConfig(0.8, 0, 100)).tokens_selected == 3
    # budget 0: nothing, and the walk stopped at rank 0
    res0 = select_toxic_tokens(scores, MaskConfig(0.8, 1, 0))
    assert res0.tokens_selected == 0 and not res0.mask.any() and res0.stopped_at_rank == 0
    # budget smaller than the first document: the first token's window (3 new) fits, the second (2 new) would not
    res4 = select_toxic_tokens(scores, MaskConfig(0.8, 1, 4))
    assert res4.mask[0].tolist() == [True, True, True, False, False] and res4.tokens_selected == 3
    assert res4.stopped_at_rank == 0 and not res4.mask[2].any()  # the walk ends, it does not skip
    # all equal: nothing is strictly above τ
    flat = select_toxic_tokens(np.ones((4, 8), np.float32), MaskConfig(0.5, 1, 100))
    assert flat.tokens_selected == 0 and list(flat.ranking) == [0, 1, 2, 3] and not flat.harmonic.any()
    # p = 1: τ = max, nothing strictly above
    assert select_toxic_tokens(scores, MaskConfig(1.0, 1, 100)).tokens_selected == 0


def test_valid_excludes_padding_from_quantile_and_context():
    scores = np.array([[3.0, 2.0, 0.0, 0.0], [1.0, 4.0, 0.0, 0.0]], np.float32)
    valid = np.array([[1, 1, 0, 0], [1, 1, 1, 0]], bool)
    res = select_toxic_tokens(scores, MaskConfig(0.5, 1, 100), valid)
    assert res.threshold_value == float(np.quantile(scores[valid], 0.5))
    assert not (res.mask & ~valid).any()
    assert res.num_scores == 5


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_rejected(bad):
    scores = np.zeros((3, 5), np.float32)
    scores[1, 2] = bad
    with pytest.raises(IfguideError, match=r"non-finite.*document 1, position 2"):
        select_toxic_tokens(scores, MaskConfig())
    # a non-finite value at a padded (invalid) position is ignored
    valid = np.ones_like(scores, dtype=bool)
    valid[1, 2] = False
    assert select_toxic_tokens(scores, MaskConfig(), valid).tokens_selected == 0


def test_config_validation():
    for kwargs, flag in (({"threshold": 1.5}, "--threshold"), ({"threshold": -0.1}, "--threshold"),
                         ({"threshold": float("nan")}, "--threshold"), ({"threshold": float("inf")}, "--threshold"),
                         ({"window": -1}, "--window"), ({"max_tokens": -5}, "--max-tokens"), ({"window": 1.5}, "--window"),
                         ({"threshold": True}, "--threshold"), ({"max_tokens": "3"}, "--max-tokens")):
        with pytest.raises(IfguideError) as err:
            MaskConfig(**kwargs)
        assert err.value.one_line().startswith(flag + " ") and "\n" not in err.value.one_line() and err.value.exit_code == 2
    # the values accepted before Config validation still are, normalised to the declared types
    cfg = MaskConfig(1, 0, 0)
    assert (cfg.threshold, cfg.window, cfg.max_tokens) == (1.0, 0, 0) and isinstance(cfg.threshold, float)
    assert MaskConfig().to_dict() == {"threshold": 0.99, "window": 1, "max_tokens": 20_000_000}
    with pytest.raises(IfguideError, match="no token scores"):
        select_toxic_tokens(np.zeros((0, 4), np.float32))
    with pytest.raises(IfguideError, match="2-D"):
        select_toxic_tokens(np.zeros((2, 2, 2), np.float32))


def test_quantile_matches_numpy():
    rng = np.random.default_rng(123)
    for i in range(150):
        dtype = (np.float16, np.float32, np.float64)[i % 3]
        n = int(rng.integers(1, 400))
        x = rng.standard_normal(n) * 10.0 ** rng.integers(-3, 3, n)
        if i % 7 == 0:
            x = np.round(x)  # ties
        x = x.astype(dtype)
        p = float(rng.choice([0.0, 1.0, 0.99, 0.5, rng.random()]))
        ref = np.quantile(x, p)
        got = quantile(x.reshape(1, -1) if i % 2 else x.reshape(-1, 1), p, chunk_elements=int(rng.integers(1, 64)))
        assert got == ref and got.dtype == ref.dtype, (dtype, n, p)
    # -0.0 and +0.0 and subnormals
    x = np.array([-0.0, 0.0, 1e-45, -1e-45, 3.0], np.float32)
    for p in (0.0, 0.2, 0.4, 0.6, 1.0):
        assert quantile(x, p) == np.quantile(x, p)


def test_load_scores_formats(tmp_path):
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    s = rng.standard_normal((4, 6)).astype(np.float32)
    save_file({"all_modules": s[None]}, str(tmp_path / "pairwise_scores.safetensors"))
    np.testing.assert_array_equal(load_scores(tmp_path / "pairwise_scores.safetensors"), s)
    save_file({"scores": s, "other": s[:1]}, str(tmp_path / "art.safetensors"))
    np.testing.assert_array_equal(load_scores(tmp_path / "art.safetensors"), s)
    save_file({"whatever": s.astype(np.float16)}, str(tmp_path / "one.safetensors"))
    assert load_scores(tmp_path / "one.safetensors").dtype == np.float16
    np.save(tmp_path / "s.npy", s)
    loaded = load_scores(tmp_path / "s.npy")
    assert isinstance(loaded, np.memmap) and np.array_equal(loaded, s)

    save_file({"a": s, "b": s}, str(tmp_path / "two.safetensors"))
    with pytest.raises(IfguideError, match="expected one named scores or all_modules"):
        load_scores(tmp_path / "two.safetensors")
    save_file({"all_modules": np.stack([s, s])}, str(tmp_path / "q2.safetensors"))
    with pytest.raises(IfguideError, match="2 queries"):
        load_scores(tmp_path / "q2.safetensors")
    np.save(tmp_path / "bad.npy", np.zeros(5, np.float32))
    with pytest.raises(IfguideError, match="shape"):
        load_scores(tmp_path / "bad.npy")
    s2 = s.copy()
    s2[2, 3] = np.nan
    np.save(tmp_path / "nan.npy", s2)
    with pytest.raises(IfguideError, match="non-finite"):
        load_scores(tmp_path / "nan.npy")
    with pytest.raises(IfguideError, match="not found"):
        load_scores(tmp_path / "missing.npy")
    with pytest.raises(IfguideError, match="unsupported"):
        (tmp_path / "x.txt").write_text("1")
        load_scores(tmp_path / "x.txt")


def test_load_scores_bf16(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    t = torch.randn(3, 5).to(torch.bfloat16)
    save_file({"all_modules": t.unsqueeze(0)}, str(tmp_path / "b.safetensors"))
    got = load_scores(tmp_path / "b.safetensors")
    assert got.dtype == np.float32 and np.array_equal(got, t.float().numpy())


def test_memmapped_scores_give_the_same_mask(tmp_path):
    rng = np.random.default_rng(7)
    s = rng.standard_normal((50, 64)).astype(np.float32)
    np.save(tmp_path / "s.npy", s)
    cfg = MaskConfig(0.95, 1, 200)
    a = select_toxic_tokens(s, cfg)
    b = select_toxic_tokens(load_scores(tmp_path / "s.npy"), cfg, chunk_elements=300)
    np.testing.assert_array_equal(a.mask, b.mask)
    np.testing.assert_array_equal(a.ranking, b.ranking)
