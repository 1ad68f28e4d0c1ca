"""The kronfluence `Task` for causal language models, and the registry of module families it tracks.

Train loss (factors and the training side of scores): summed next-token cross-entropy over the
labelled tokens of a batch. With ``sample=True`` (EK-FAC's true Fisher) the labels are drawn from the
model's own predictive distribution, taken from the *detached logits of the same forward pass* — a
second forward under ``torch.no_grad()`` would trip kronfluence's hooks.

Measurement (the query side of scores): Σ_q w_q · Σ_t CE_qt over the continuation tokens of each
query q (prompt tokens carry label -100). With w = +1/N_tox for toxic and −1/N_safe for non-toxic
queries and kronfluence's ``aggregate_query_gradients=True``, one pass gives the differential score
``-(mean_tox ∇log p(c|p) − mean_safe ∇log p(c|p))ᵀ H⁻¹ ∇L_train`` (the measurement is linear in w).

Tracked modules come from a *family* (GPT-NeoX, Llama, GPT-2 built in): fnmatch globs over
``model.named_modules()`` names. Users add families without editing code, in a YAML/JSON file given
with ``--families FILE`` or ``$IFGUIDE_FAMILIES`` (or ``families.yaml`` in the workspace)::

    families:
      phi:                                # family name
        model_types: [phi]                # config.model_type values it covers
        modules: ["model.layers.*.mlp.fc1", "model.layers.*.mlp.fc2"]
        exclude: []                       # optional globs to drop

or override the globs for one run with ``--modules GLOB`` (repeatable).
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .errors import IfguideError

IGNORE_INDEX = -100
FAMILIES_ENV = "IFGUIDE_FAMILIES"
WORKSPACE_FAMILIES_FILE = "families.yaml"


# ---- module families -------------------------------------------------------------------------
@dataclass(frozen=True)
class ModuleFamily:
    """Which linear layers of a model family kronfluence tracks (fnmatch globs on module names)."""

    name: str
    modules: tuple[str, ...]
    model_types: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    source: str = "built-in"

    def identity(self) -> dict:
        return {"name": self.name, "modules": list(self.modules), "exclude": list(self.exclude)}


BUILTIN_FAMILIES: dict[str, ModuleFamily] = {f.name: f for f in [
    # every linear layer of the transformer blocks; the embedding / unembedding (vocab-sized) is not tracked
    ModuleFamily("gpt_neox", ("gpt_neox.layers.*.attention.query_key_value", "gpt_neox.layers.*.attention.dense",
                              "gpt_neox.layers.*.mlp.dense_h_to_4h", "gpt_neox.layers.*.mlp.dense_4h_to_h"),
                 model_types=("gpt_neox",)),
    ModuleFamily("llama", ("model.layers.*.self_attn.q_proj", "model.layers.*.self_attn.k_proj",
                           "model.layers.*.self_attn.v_proj", "model.layers.*.self_attn.o_proj",
                           "model.layers.*.mlp.gate_proj", "model.layers.*.mlp.up_proj", "model.layers.*.mlp.down_proj"),
                 model_types=("llama", "mistral", "qwen2")),
    ModuleFamily("gpt2", ("transformer.h.*.attn.c_attn", "transformer.h.*.attn.c_proj",
                          "transformer.h.*.mlp.c_fc", "transformer.h.*.mlp.c_proj"),
                 model_types=("gpt2",)),  # its Conv1D layers are converted to nn.Linear first
]}


def _read_families_file(path: Path) -> dict[str, ModuleFamily]:
    from .yamlfile import load_yaml_mapping  # JSON is YAML too

    data = load_yaml_mapping(path, "families file", hint=f"pass an existing YAML/JSON file (--families or ${FAMILIES_ENV})")
    if isinstance(data, dict) and "families" in data:
        data = data["families"]
    if not isinstance(data, dict):
        raise IfguideError(f"families file {path} must map family names to {{modules: [...]}}", exit_code=2)
    found = {}
    for name, spec in data.items():
        if isinstance(spec, list):
            spec = {"modules": spec}
        if not isinstance(spec, dict) or not spec.get("modules"):
            raise IfguideError(f"family {name!r} in {path} needs a non-empty `modules` list of globs", exit_code=2)
        modules = spec["modules"]
        if isinstance(modules, str):
            modules = [modules]
        exclude = spec.get("exclude") or []
        model_types = spec.get("model_types") or [name]
        found[str(name)] = ModuleFamily(str(name), tuple(map(str, modules)), tuple(map(str, model_types)),
                                        tuple(map(str, [exclude] if isinstance(exclude, str) else exclude)), source=str(path))
    return found


def load_families(extra_file: str | os.PathLike | None = None, workspace_root: str | os.PathLike | None = None) -> dict[str, ModuleFamily]:
    """Built-in families, then the workspace's families.yaml, then $IFGUIDE_FAMILIES, then --families (later wins)."""
    families = dict(BUILTIN_FAMILIES)
    sources: list[Path] = []
    if workspace_root is not None and (Path(workspace_root) / WORKSPACE_FAMILIES_FILE).is_file():
        sources.append(Path(workspace_root) / WORKSPACE_FAMILIES_FILE)
    if os.environ.get(FAMILIES_ENV):
        sources.append(Path(os.environ[FAMILIES_ENV]).expanduser())
    if extra_file:
        sources.append(Path(extra_file).expanduser())
    for path in sources:
        families.update(_read_families_file(path))
    return families


def find_family(family_or_type: str, families: dict[str, ModuleFamily]) -> ModuleFamily:
    """The family named `family_or_type`, else the one listing it among its model types; a clear error otherwise."""
    if family_or_type in families:
        return families[family_or_type]
    for fam in reversed(list(families.values())):  # user files come last and win
        if family_or_type in fam.model_types:
            return fam
    raise IfguideError(
        f"unknown model family {family_or_type!r}: no list of modules to track for influence "
        f"(known families: {', '.join(sorted(families))})",
        hint=f"add it to a families file (--families FILE or ${FAMILIES_ENV}; see `ifguide factors --help`) "
             f"or pass --modules 'GLOB' (e.g. 'model.layers.*.mlp.*')",
        exit_code=2)


def custom_family(globs: list[str]) -> ModuleFamily:
    return ModuleFamily("custom", tuple(globs), (), (), source="--modules")


def convert_conv1d_to_linear(model) -> int:
    """Replace transformers' Conv1D layers (GPT-2: y = x W + b, W is in×out) by equivalent nn.Linear layers."""
    import torch
    from torch import nn

    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover - very old transformers
        return 0
    replaced = 0
    for parent_name, parent in list(model.named_modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, Conv1D):
                in_f, out_f = child.weight.shape
                linear = nn.Linear(in_f, out_f, bias=child.bias is not None, device=child.weight.device, dtype=child.weight.dtype)
                with torch.no_grad():
                    linear.weight.copy_(child.weight.t())
                    if child.bias is not None:
                        linear.bias.copy_(child.bias)
                setattr(parent, child_name, linear)
                replaced += 1
    return replaced


def select_modules(model, family: ModuleFamily) -> list[str]:
    """Names of the nn.Linear modules matching the family's globs (in model order); error if none."""
    from torch import nn

    names = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear):
            continue
        if any(fnmatch.fnmatchcase(name, g) for g in family.modules) and not any(fnmatch.fnmatchcase(name, g) for g in family.exclude):
            names.append(name)
    if not names:
        linear = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][:6]
        raise IfguideError(
            f"no linear layer of the model matches the module globs of family {family.name!r} ({', '.join(family.modules)})",
            hint=f"linear layers look like: {', '.join(linear) or 'none found'}; pass --modules 'GLOB' or fix the families file",
            exit_code=2)
    return names


# ---- the kronfluence task --------------------------------------------------------------------
def shifted_ce(logits, labels):
    """Per-position next-token CE (B, T-1) in float32, 0 where the shifted label is IGNORE_INDEX."""
    import torch.nn.functional as F

    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, 1:]
    return F.cross_entropy(shift_logits.reshape(-1, shift_logits.size(-1)), shift_labels.reshape(-1),
                           ignore_index=IGNORE_INDEX, reduction="none").view(shift_labels.shape)


FISHER_SEED = 0


def sample_labels(shift_logits, row_index=None, seed: int = FISHER_SEED):
    """Labels drawn from softmax(shift_logits) (B, T-1, V) for the true-Fisher pass.

    With the rows' dataset indices the draw is a function of (seed, row, position) alone — inverse-CDF sampling
    with uniforms from a generator seeded per row — so it does not depend on batch composition, the number of
    processes, or resumption, and nearly identical distributions (fp32 vs bf16) give nearly identical labels.
    """
    import torch

    with torch.no_grad():
        if row_index is None:
            probs = torch.softmax(shift_logits, dim=-1)
            return torch.multinomial(probs.reshape(-1, probs.size(-1)), num_samples=1).view(probs.shape[:-1])
        out = torch.empty(shift_logits.shape[:-1], dtype=torch.long, device=shift_logits.device)
        vocab = shift_logits.size(-1)
        for i, row in enumerate(row_index.tolist()):
            cdf = torch.softmax(shift_logits[i], dim=-1).cumsum_(dim=-1)
            gen = torch.Generator().manual_seed((seed * 1_000_003 + int(row)) % (2**63))
            u = torch.rand(cdf.shape[0], generator=gen, dtype=torch.float64).to(device=cdf.device, dtype=cdf.dtype)
            out[i] = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(-1)).squeeze(-1).clamp_(max=vocab - 1)
        return out


def _make_task_class():
    from kronfluence.task import Task

    class CausalLMTask(Task):
        """See the module docstring. `on_train_batch` / `on_query_batch` receive the batch size (progress)."""

        def __init__(self, tracked_modules: list[str], on_train_batch: Callable[[int], None] | None = None,
                     on_query_batch: Callable[[int], None] | None = None, seed: int = FISHER_SEED):
            self.tracked_modules = list(tracked_modules)
            self.seed = seed
            self.on_train_batch = on_train_batch
            self.on_query_batch = on_query_batch

        def _logits(self, batch, model):
            return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits

        def compute_train_loss(self, batch: Any, model, sample: bool = False):
            import torch
            import torch.nn.functional as F

            logits = self._logits(batch, model)
            labels = batch["labels"]
            if sample:
                # pseudo-labels from the detached logits of this same forward pass (no second forward)
                shift_logits = logits[:, :-1, :].float()
                sampled = sample_labels(shift_logits.detach(), batch.get("index"), self.seed)
                sampled = torch.where(labels[:, 1:].eq(IGNORE_INDEX), torch.full_like(sampled, IGNORE_INDEX), sampled)
                loss = F.cross_entropy(shift_logits.reshape(-1, shift_logits.size(-1)), sampled.reshape(-1),
                                       ignore_index=IGNORE_INDEX, reduction="sum")
            else:
                loss = shifted_ce(logits, labels).sum()
            if self.on_train_batch is not None:
                self.on_train_batch(int(labels.shape[0]))
            return loss

        def compute_measurement(self, batch: Any, model):
            logits = self._logits(batch, model)
            per_query = shifted_ce(logits, batch["labels"]).sum(dim=-1)  # summed CE over continuation tokens
            if self.on_query_batch is not None:
                self.on_query_batch(int(per_query.shape[0]))
            return (per_query * batch["weight"].to(per_query.dtype)).sum()

        def get_influence_tracked_modules(self):
            return self.tracked_modules

        def get_attention_mask(self, batch: Any):
            return batch["attention_mask"]

    return CausalLMTask


_TASK_CLASS = None


def make_task(tracked_modules: list[str], **callbacks):
    """A `CausalLMTask` (the class is built lazily so importing this module does not import kronfluence)."""
    global _TASK_CLASS
    if _TASK_CLASS is None:
        _TASK_CLASS = _make_task_class()
    return _TASK_CLASS(tracked_modules, **callbacks)
