"""Reward-augmented decoding (RAD, Deng & Raffel, EMNLP 2023) as a decoding-time defense.

This is the project's own implementation, written from the paper and checked against the
reference code (github.com/r-three/RAD, and the copy the IF-Guide authors used):

- Reward model: GPT-2 (`GPT2Config`) with its LM head replaced by a linear layer with bias and
  7 outputs, trained (cumulative MSE) on Jigsaw Unintended Bias labels in this order:
  `toxicity` (Jigsaw `target`), severe_toxicity, obscene, identity_attack, insult, threat,
  sexual_explicit. The reward of a prefix is output 0 (toxicity) at its last real token, clamped
  to [0, 1] — exactly what the reference's `reward_logits[:, 0]` + `torch.clamp` do.
- At each step the top-k (k=20) candidate tokens are scored by the reward model on
  prefix+candidate and their logits become `logit − β·reward` (β=50); every other token gets −inf.
  (The reference adds `β·(1 − reward)` with `inverse=True`: the same distribution, the constant
  β cancels in the softmax.) With top-p the nucleus is taken first, on the LM's own distribution,
  and RAD re-ranks its top-k: the order the IF-Guide authors used (`TopPLogitsWarper`, then RAD).
- The reward model's key/value cache is kept across steps: the prompt is encoded once; at each
  step the cache is expanded k-fold, the k candidates are appended (one forward of B·k rows of
  one piece each), and at the next step the rows of the candidates that were actually sampled are
  kept — the cost per step is one short forward, not a re-encoding of the whole prefix.
- Tokenizers: when the LM and reward model share a vocabulary (GPT-2 models, or a reward model
  built for the LM's tokenizer) token ids are fed directly. Otherwise (Pythia's tokenizer vs
  GPT-2's) the prompt is decoded and re-encoded with the reward model's tokenizer, and each
  candidate token is decoded on its own and re-encoded into one or more reward-model tokens —
  the reference's approach; a candidate that decodes to nothing keeps its prefix's reward.

`ifguide rad download` installs the reward model into the workspace (`rad.install`) as a `classifiers`
artifact named `rad-reward`: `reward_model/{config.json, model.safetensors, tokenizer files}` plus
`classifier.json`; the manifest records the sha256 of the source weights.
"""

from __future__ import annotations

import functools
import inspect
import json
from typing import TYPE_CHECKING

import torch
from torch import nn
from transformers import LogitsProcessor

from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.rad.source import RAD_URL as RAD_URL  # re-exported: where `rad download` gets it by default

if TYPE_CHECKING:
    from ifguide_cli.core.store.workspace import Workspace

REWARD_NAME = "rad-reward"
REWARD_DIR = "reward_model"
REWARD_FILE = "model.safetensors"
OUTPUT_NAMES = ["toxicity", "severe_toxicity", "obscene", "identity_attack", "insult", "threat", "sexual_explicit"]
REWARD_INDEX = 0  # toxicity


@functools.cache
def _cache_argument(model_class) -> str:
    """The name of the KV-cache argument and output: transformers 5.x renamed `past_key_values` to `cache`
    (the old name still works there but warns that it will be removed)."""
    return "cache" if "cache" in inspect.signature(model_class.forward).parameters else "past_key_values"


class RewardModel(nn.Module):
    """GPT-2 body + linear head (with bias) over `num_outputs` rewards at every position."""

    def __init__(self, config, num_outputs: int = 7, reward_index: int = REWARD_INDEX):
        super().__init__()
        from transformers import GPT2Model

        self.config = config
        self.transformer = GPT2Model(config)
        self.head = nn.Linear(config.n_embd, num_outputs, bias=True)
        self.num_outputs, self.reward_index = num_outputs, reward_index

    def forward(self, input_ids, attention_mask=None, position_ids=None, cache=None, use_cache=False):
        name = _cache_argument(type(self.transformer))
        out = self.transformer(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                               use_cache=use_cache, **{name: cache})
        return self.head(out.last_hidden_state), getattr(out, name)

    def reward(self, outputs):
        """The reward used for decoding: output `reward_index`, clamped to [0, 1]."""
        return outputs[..., self.reward_index].float().clamp(0.0, 1.0)


@torch.no_grad()
def score_sequences(rm: RewardModel, input_ids, attention_mask=None):
    """Reward at the last real token of each (right- or left-padded) sequence, no cache: the reference value."""
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    out, _ = rm(input_ids, attention_mask=attention_mask, position_ids=position_ids)
    last = attention_mask.shape[1] - 1 - attention_mask.flip(-1).argmax(-1)  # last position with mask 1
    return rm.reward(out[torch.arange(input_ids.shape[0], device=input_ids.device), last])


def _vocab_equal(a, b) -> bool:
    try:
        return a.get_vocab() == b.get_vocab()
    except Exception:
        return False


class RADLogitsProcessor(LogitsProcessor):
    """`logits − β·reward` on the top-k candidates, −inf elsewhere; reward model KV-cached across steps.

    One instance per `generate` call (it also restarts by itself when it sees a new prompt batch).
    Call `set_prompt_mask(attention_mask)` with the mask given to `generate` so left padding is
    known exactly (otherwise leading pad tokens are taken as padding). `trace`, when set to a list,
    receives (candidate ids, rewards, processed logits of the candidates) per step.
    """

    def __init__(self, reward_model: RewardModel, lm_tokenizer, rm_tokenizer=None, *, beta: float = 50.0,
                 topk: int = 20, mode: str = "auto", max_new_tokens: int = 64):
        self.rm = reward_model.eval()
        self.lm_tok, self.rm_tok = lm_tokenizer, rm_tokenizer or lm_tokenizer
        self.beta, self.topk = float(beta), int(topk)
        if mode == "auto":
            mode = "ids" if rm_tokenizer is None or _vocab_equal(lm_tokenizer, rm_tokenizer) else "text"
        if mode not in ("ids", "text"):
            raise ValueError(f"mode must be auto, ids or text, got {mode!r}")
        self.mode = mode
        if mode == "ids" and len(lm_tokenizer) > reward_model.config.vocab_size:
            raise IfguideError(f"the reward model's vocabulary ({reward_model.config.vocab_size}) is smaller than the "
                               f"language model's ({len(lm_tokenizer)})",
                               hint="install the reward model with its own tokenizer (`ifguide rad download --tokenizer DIR`)")
        n_pos = reward_model.config.n_positions
        self.max_prompt = max(1, n_pos - 4 * max_new_tokens) if n_pos > 8 * max_new_tokens else max(1, n_pos // 2)
        rm_pad = self.rm_tok.pad_token_id if self.rm_tok.pad_token_id is not None else self.rm_tok.eos_token_id
        self.rm_pad = rm_pad if rm_pad is not None else 0
        self.rm_start = self.rm_tok.eos_token_id if self.rm_tok.eos_token_id is not None else self.rm_pad
        self._pieces: dict[int, list[int]] = {}
        self._prompt_mask = None
        self.trace = None
        self.reset()

    def reset(self) -> None:
        self._cache = self._mask = None
        self._select: torch.Tensor | None = None  # the cache rows the sampled candidates continue
        self._prev_topk: torch.Tensor | None = None  # the previous step's candidates (rows, k) and their rewards
        self._prev_rewards: torch.Tensor | None = None
        self._prefix_reward: torch.Tensor | None = None
        self._len: int | None = None  # the length and rows of the previous step's input_ids
        self._rows: int | None = None

    def set_prompt_mask(self, attention_mask) -> None:
        self._prompt_mask = attention_mask
        self.reset()

    # ---- the processor -----------------------------------------------------------------
    @torch.no_grad()
    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.Tensor:
        rows, length = input_ids.shape
        if self._len is None or rows != self._rows or length != self._len + 1:
            self._start(input_ids)
        else:
            self._advance(input_ids[:, -1])
        k = min(self.topk, scores.shape[-1])
        top_vals, top_ids = scores.topk(k, dim=-1)
        rewards = self._candidate_rewards(top_ids)  # (rows, k) in [0, 1]
        new_vals = top_vals - self.beta * rewards.to(top_vals.dtype)
        out = torch.full_like(scores, float("-inf"))
        out.scatter_(1, top_ids, new_vals)
        self._len, self._rows, self._prev_topk, self._prev_rewards = length, rows, top_ids, rewards
        if self.trace is not None:
            self.trace.append((top_ids.cpu(), rewards.cpu(), new_vals.cpu()))
        return out

    def _device(self):
        return next(self.rm.parameters()).device

    def _start(self, input_ids) -> None:
        """Encode the prompts once; the cache then holds (rows, L)."""
        device = self._device()
        rows = input_ids.shape[0]
        mask = self._prompt_mask
        if mask is not None and mask.shape[0] != rows and rows % mask.shape[0] == 0:
            mask = mask.repeat_interleave(rows // mask.shape[0], dim=0)
        if mask is None or mask.shape != input_ids.shape:
            mask = self._infer_mask(input_ids)
        mask = mask.to(input_ids.device).long().clone()
        if self.mode == "ids":
            ids, rm_mask = input_ids, mask
            if ids.shape[1] > self.max_prompt:
                ids, rm_mask = ids[:, -self.max_prompt:], rm_mask[:, -self.max_prompt:]
                rm_mask[rm_mask.sum(-1) == 0, -1] = 1
        else:
            seqs = []
            for row, m in zip(input_ids.tolist(), mask.tolist(), strict=True):
                text = self.lm_tok.decode([t for t, keep in zip(row, m, strict=True) if keep], skip_special_tokens=True)
                enc = self.rm_tok.encode(text, add_special_tokens=False) if text else []
                seqs.append((enc or [self.rm_start])[-self.max_prompt:])
            width = max(len(s) for s in seqs)
            ids = torch.tensor([[self.rm_pad] * (width - len(s)) + s for s in seqs])
            rm_mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs])
        ids, rm_mask = ids.to(device), rm_mask.to(device)
        from transformers import DynamicCache

        cache = DynamicCache()
        position_ids = (rm_mask.cumsum(-1) - 1).clamp(min=0)
        out, cache = self.rm(ids, attention_mask=rm_mask, position_ids=position_ids, cache=cache, use_cache=True)
        self._cache, self._mask = cache, rm_mask
        self._prefix_reward = self.rm.reward(out[:, -1])  # left padded: the last column is real
        self._select = None

    def _infer_mask(self, input_ids):
        pad = self.lm_tok.pad_token_id
        if pad is None:
            return torch.ones_like(input_ids)
        real = (input_ids != pad).long().cumsum(-1) > 0  # from the first non-pad token on
        real[:, -1] = True
        return real.long()

    def _advance(self, last_tokens) -> None:
        """Keep the cache rows of the candidates that were sampled at the previous step."""
        assert self._prev_topk is not None and self._prev_rewards is not None, "a step follows `_start`"
        k = self._prev_topk.shape[1]
        hit = self._prev_topk == last_tokens.unsqueeze(-1)
        # a finished row gets pad tokens that may not be among its candidates: any row will do (its text is final)
        chosen = torch.where(hit.any(-1), hit.float().argmax(-1), torch.zeros_like(last_tokens))
        base = torch.arange(chosen.shape[0], device=chosen.device) * k
        self._select = (base + chosen).to(self._device())
        self._prefix_reward = self._prev_rewards.gather(1, chosen.unsqueeze(-1)).squeeze(-1)

    def _candidate_rewards(self, top_ids):
        device = self._device()
        rows, k = top_ids.shape
        # expand (rows, L) -> (rows*k, L), or select the sampled rows and expand, in one gather
        if self._select is None:
            self._cache.batch_repeat_interleave(k)
            mask = self._mask.repeat_interleave(k, dim=0)
        else:
            idx = self._select.repeat_interleave(k)
            self._cache.reorder_cache(idx)
            mask = self._mask[idx]
        if self.mode == "ids":
            chunk = top_ids.reshape(rows * k, 1).to(device)
            chunk_mask = torch.ones_like(chunk)
        else:
            pieces = [self._piece(t) for t in top_ids.reshape(-1).tolist()]
            width = max(1, max(len(p) for p in pieces))
            chunk = torch.tensor([p + [self.rm_pad] * (width - len(p)) for p in pieces], device=device)
            chunk_mask = torch.tensor([[1] * len(p) + [0] * (width - len(p)) for p in pieces], device=device)
        full_mask = torch.cat([mask, chunk_mask], dim=-1)
        position_ids = (full_mask.cumsum(-1) - 1).clamp(0, self.rm.config.n_positions - 1)[:, -chunk.shape[1]:]
        out, self._cache = self.rm(chunk, attention_mask=full_mask, position_ids=position_ids,
                                   cache=self._cache, use_cache=True)
        n_real = chunk_mask.sum(-1)
        last = (n_real - 1).clamp(min=0)
        rewards = self.rm.reward(out[torch.arange(rows * k, device=device), last])
        prefix = self._prefix_reward.to(device).repeat_interleave(k)
        rewards = torch.where(n_real > 0, rewards, prefix)  # a candidate that decodes to nothing keeps the prefix reward
        self._mask = full_mask
        return rewards.view(rows, k).to(top_ids.device)

    def _piece(self, token_id: int) -> list[int]:
        piece = self._pieces.get(token_id)
        if piece is None:
            text = self.lm_tok.decode([token_id], skip_special_tokens=True)
            piece = self.rm_tok.encode(text, add_special_tokens=False) if text else []
            self._pieces[token_id] = piece
        return piece


# ---- the installed reward model ------------------------------------------------------------
def load_reward_model(art, device: str = "cpu", dtype=None):
    """(RewardModel, tokenizer, meta) from a `rad-reward` classifiers artifact."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, GPT2Config

    folder = art.file(REWARD_DIR)
    meta = json.loads((folder / "config.json").read_text())
    config = GPT2Config.from_dict({k: v for k, v in meta.items() if k not in ("num_outputs", "reward_index", "output_names")})
    rm = RewardModel(config, meta.get("num_outputs", 7), meta.get("reward_index", REWARD_INDEX))
    rm.load_state_dict(load_file(str(folder / REWARD_FILE)))
    tok = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    rm = rm.to(device=device, dtype=dtype or torch.float32).eval()
    return rm, tok, meta


def resolve_reward_model(workspace: Workspace, ref: str | None = None):
    """The installed reward model (by reference, else the newest `rad-reward`), or one clear line."""
    from ifguide_cli.core.errors import ArtifactNotFound

    try:
        art = workspace.resolve(ref or REWARD_NAME, "classifiers")
    except ArtifactNotFound:
        raise IfguideError(f"no RAD reward model {('named ' + repr(ref)) if ref else ''} in workspace {workspace.root}".replace("  ", " "),
                           hint="install it with `ifguide rad download` (offline: `ifguide rad download --from saved_models.zip`)") from None
    meta_file = art.path / "classifier.json"
    if not meta_file.is_file() or json.loads(meta_file.read_text()).get("backend") != "rad-reward":
        raise IfguideError(f"classifier artifact {art.id} is not a RAD reward model",
                           hint="install one with `ifguide rad download`", exit_code=2)
    return art


def normalise_state_dict(state: dict) -> dict:
    """RAD's checkpoint keys (GPT2RewardModel: `model.transformer.*`, `model.lm_head.{weight,bias}`) → ours."""
    out = {}
    for key, value in state.items():
        if not hasattr(value, "shape"):
            continue
        for prefix in ("module.", "model."):
            if key.startswith(prefix):
                key = key[len(prefix):]
        if key.endswith((".attn.bias", ".attn.masked_bias", "crossattention.bias")):
            continue  # causal-mask buffers of old GPT-2 checkpoints
        if key.startswith(("lm_head.", "score.")):
            key = "head." + key.split(".", 1)[1]
        elif not key.startswith(("transformer.", "head.")):
            key = "transformer." + key
        out[key] = value
    if "head.weight" not in out:
        raise IfguideError("the weights have no reward head (lm_head/score/head with one row per output)", exit_code=2)
    if "head.bias" not in out:
        out["head.bias"] = torch.zeros(out["head.weight"].shape[0], dtype=out["head.weight"].dtype)
    return out


def infer_config(state: dict, given: dict | None = None, eos_token_id: int | None = None):
    """GPT2Config from the weight shapes (GPT-2 heads are 64-dim), overridden by a config.json if present."""
    from transformers import GPT2Config

    wte = state["transformer.wte.weight"]
    layers = {int(k.split(".")[2]) for k in state if k.startswith("transformer.h.")}
    fields = {"vocab_size": wte.shape[0], "n_embd": wte.shape[1], "n_layer": len(layers),
              "n_positions": state["transformer.wpe.weight"].shape[0], "n_head": max(1, wte.shape[1] // 64)}
    fc = state.get("transformer.h.0.mlp.c_fc.weight")
    if fc is not None:
        fields["n_inner"] = fc.shape[1]
    given = {k: v for k, v in (given or {}).items() if k in ("n_head", "activation_function", "layer_norm_epsilon",
                                                             "bos_token_id", "eos_token_id", "scale_attn_weights")}
    if eos_token_id is not None and eos_token_id < fields["vocab_size"]:
        fields["bos_token_id"] = fields["eos_token_id"] = eos_token_id
    merged = {**fields, **given}
    for key in ("bos_token_id", "eos_token_id"):  # GPT-2's 50256 does not exist in a smaller vocabulary
        merged.setdefault(key, 50256 if fields["vocab_size"] > 50256 else None)
        if merged[key] is not None and merged[key] >= fields["vocab_size"]:
            merged[key] = None
    return GPT2Config(**merged)
