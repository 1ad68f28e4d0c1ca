"""RAD: the KV-cached reward re-ranking, its effect on the chosen tokens' reward, top-p composition, install."""

from __future__ import annotations

import pytest
import torch
from evalkit import save_rad_release, tiny_lm, tiny_reward_model
from transformers import LogitsProcessorList, TopPLogitsWarper

from ifguide_cli.core.errors import IfguideError, OfflineResourceMissing
from ifguide_cli.core.rad.decoding import (
    RADLogitsProcessor,
    load_reward_model,
    resolve_reward_model,
    score_sequences,
)
from ifguide_cli.core.rad.install import install_reward_model
from ifguide_cli.core.store.workspace import Workspace

PROMPTS = ["The bus driver hit the brakes, honked twice and", "Hello",
           "Anna wrote a long post about baking bread on a forum. A stranger read it and wrote"]


def _generate(model, tok, proc=None, *, top_p=0.9, samples=3, new=8, seed=0, do_sample=True):
    tok.padding_side = "left"
    enc = tok(PROMPTS, return_tensors="pt", padding=True, add_special_tokens=False)
    procs = [TopPLogitsWarper(top_p)] if do_sample and top_p < 1 else []
    if proc is not None:
        proc.set_prompt_mask(enc.attention_mask)
        procs.append(proc)
    torch.manual_seed(seed)
    out = model.generate(**enc, do_sample=do_sample, top_p=1.0, top_k=0, max_new_tokens=new,
                         num_return_sequences=samples, logits_processor=LogitsProcessorList(procs),
                         pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    return out, enc.attention_mask.repeat_interleave(samples, 0), enc.input_ids.shape[1]


def _alive(out, width, step, eos):
    """Rows that had not finished before `step` (their token at `step` was really sampled)."""
    return ~(out[:, width:width + step] == eos).any(-1)


def _chosen_rewards(proc_trace, out, width, eos):
    """Per step and live row: (reward the processor computed for the sampled token, candidate rewards, vals)."""
    rows = []
    for step, (ids, rewards, vals) in enumerate(proc_trace):
        chosen = out[:, width + step]
        alive = _alive(out, width, step, eos)
        for r in range(out.shape[0]):
            if alive[r]:
                j = (ids[r] == chosen[r]).nonzero()[0, 0]
                rows.append((step, r, rewards[r, j].item(), rewards[r], vals[r]))
    return rows


def test_cached_rewards_equal_a_full_recompute():
    model, tok = tiny_lm()
    rm = tiny_reward_model()
    proc = RADLogitsProcessor(rm, tok, tok, beta=50)
    proc.trace = []
    out, mask, width = _generate(model, tok, proc)
    assert proc.mode == "ids"
    checked = 0
    for step, r, reward, _, _ in _chosen_rewards(proc.trace, out, width, tok.eos_token_id):
        seq = out[r:r + 1, :width + step + 1]
        m = torch.cat([mask[r:r + 1], torch.ones(1, step + 1, dtype=torch.long)], 1)
        assert reward == pytest.approx(score_sequences(rm, seq, m).item(), abs=1e-5)
        checked += 1
    assert checked > 20


@pytest.mark.slow
def test_text_mode_with_a_different_tokenizer_matches_its_reencoded_recompute():
    """LM and reward model with different vocabularies: decode / re-encode, still KV-cached and exact."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from ifguide_cli.core.data import load_records

    texts = [r["text"] for r in load_records("tiny-heldout")[0]]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=600, special_tokens=["<|endoftext|>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    rm_tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    model, tok = tiny_lm()
    rm = tiny_reward_model(seed=3, vocab_size=len(rm_tok))
    proc = RADLogitsProcessor(rm, tok, rm_tok, beta=50)
    proc.trace = []
    out, mask, width = _generate(model, tok, proc, samples=2, new=6)
    assert proc.mode == "text"
    for step, r, reward, _, _ in _chosen_rewards(proc.trace, out, width, tok.eos_token_id):
        prompt = tok.decode(out[r, :width][mask[r] == 1], skip_special_tokens=True)
        ids = rm_tok.encode(prompt, add_special_tokens=False)
        for t in out[r, width:width + step + 1].tolist():
            ids += rm_tok.encode(tok.decode([t], skip_special_tokens=True), add_special_tokens=False)
        assert reward == pytest.approx(score_sequences(rm, torch.tensor([ids])).item(), abs=1e-5)


def test_rad_provably_lowers_the_expected_reward_of_each_step():
    """Per step, RAD samples from the top-k distribution tilted by exp(−β·r); tilting can only lower E[r]
    (d/dβ E_β[r] = −Var_β[r] ≤ 0). Checked on every step of a real generation."""
    model, tok = tiny_lm()
    rm = tiny_reward_model()
    proc = RADLogitsProcessor(rm, tok, tok, beta=50)
    proc.trace = []
    _generate(model, tok, proc)
    strict = 0
    for _ids, rewards, vals in proc.trace:
        plain = vals + 50 * rewards  # the LM's own logits of the candidates (after top-p)
        p_plain, p_rad = torch.softmax(plain, -1), torch.softmax(vals, -1)
        e_plain = torch.nan_to_num(p_plain * rewards).sum(-1)
        e_rad = torch.nan_to_num(p_rad * rewards).sum(-1)
        assert (e_rad <= e_plain + 1e-6).all()
        strict += int((e_rad < e_plain - 1e-3).sum())
    assert strict > 0


def test_sampled_tokens_have_lower_reward_than_plain_sampling_and_argmin_at_large_beta():
    model, tok = tiny_lm()
    rm = tiny_reward_model()
    eos = tok.eos_token_id

    def chosen_mean(out, mask, width):
        vals = []
        for step in range(out.shape[1] - width):
            alive = _alive(out, width, step, eos)
            m = torch.cat([mask, torch.ones(out.shape[0], step + 1, dtype=torch.long)], 1)
            vals += score_sequences(rm, out[:, :width + step + 1], m)[alive].tolist()
        return sum(vals) / len(vals)

    plain = chosen_mean(*_generate(model, tok, None, samples=6, new=10, seed=1))
    rad = chosen_mean(*_generate(model, tok, RADLogitsProcessor(rm, tok, tok, beta=50), samples=6, new=10, seed=1))
    assert rad < plain - 0.05

    huge = RADLogitsProcessor(rm, tok, tok, beta=1e6)
    huge.trace = []
    out, _, width = _generate(model, tok, huge, samples=2, new=6, seed=2)
    for _, _, reward, cand_rewards, vals in _chosen_rewards(huge.trace, out, width, eos):
        allowed = cand_rewards[torch.isfinite(vals)]
        assert reward <= allowed.min().item() + 1e-4


def test_top_p_is_applied_first_on_the_lm_distribution():
    """A nucleus of one token leaves RAD nothing to re-rank: the result is greedy decoding."""
    model, tok = tiny_lm()
    rm = tiny_reward_model()
    greedy, _, _ = _generate(model, tok, None, do_sample=False, samples=1, new=6)
    rad, _, _ = _generate(model, tok, RADLogitsProcessor(rm, tok, tok, beta=50), top_p=1e-6, samples=1, new=6)
    assert torch.equal(greedy, rad)


def test_a_reward_model_with_a_smaller_vocabulary_is_refused():
    _, tok = tiny_lm()
    with pytest.raises(IfguideError, match="vocabulary"):
        RADLogitsProcessor(tiny_reward_model(vocab_size=100), tok, None)


def test_install_from_rad_release_zip_and_load_back(tmp_path):
    ws = Workspace(tmp_path / "ws")
    rm = tiny_reward_model(seed=5)
    archive = save_rad_release(rm, tmp_path / "src")
    res = install_reward_model(ws, source=str(archive), tokenizer=str(tmp_path / "src" / "gpt2-tokenizer"))
    art, reused = res.artifact, res.reused
    assert not reused and art.name == "rad-reward" and art.summary["outputs"] == 7
    assert art.summary["reward_output"] == "toxicity" and len(art.summary["source_sha256"]) == 64
    assert ws.verify(art) == []  # every file checksummed in the manifest
    loaded, _rm_tok, meta = load_reward_model(art)
    ids = torch.tensor([[5, 17, 99, 3]])
    assert torch.allclose(loaded(ids)[0], rm(ids)[0], atol=1e-6)
    assert meta["n_head"] == 1 and meta["reward_index"] == 0
    # same weights from the bare .bin: the same artifact
    res = install_reward_model(ws, source=str(tmp_path / "src/saved_models/gpt2_toxicity/pytorch_model.bin"),
                               tokenizer=str(tmp_path / "src" / "gpt2-tokenizer"))
    again, reused = res.artifact, res.reused
    assert reused and again.id == art.id
    assert resolve_reward_model(ws).id == art.id


def test_install_errors_are_one_clear_line(tmp_path):
    ws = Workspace(tmp_path / "ws")
    archive = save_rad_release(tiny_reward_model(), tmp_path / "src")
    with pytest.raises(IfguideError, match="checksum mismatch"):
        install_reward_model(ws, source=str(archive), tokenizer=str(tmp_path / "src" / "gpt2-tokenizer"), sha256="0" * 64)
    with pytest.raises(OfflineResourceMissing) as err:  # offline, no tokenizer next to the weights, gpt2 not cached
        install_reward_model(ws, source=str(archive))
    assert "--tokenizer" in err.value.one_line()
    with pytest.raises(OfflineResourceMissing) as err:  # HF_HUB_OFFLINE=1 in tests: no download attempt
        install_reward_model(ws)
    assert "--from" in err.value.one_line() and "saved_models.zip" in err.value.one_line()
    with pytest.raises(IfguideError, match="no RAD reward model"):
        resolve_reward_model(ws)
    with pytest.raises(IfguideError, match="not both"):
        install_reward_model(ws, source=str(archive), url="https://example.org/saved_models.zip")
