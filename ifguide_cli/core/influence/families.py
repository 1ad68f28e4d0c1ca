"""Which layers influence tracks: module families (fnmatch globs over `model.named_modules()` names).

GPT-NeoX, Llama and GPT-2 are built in (`extensions.MODEL_FAMILIES`: a new built-in family is one entry). Users add families without editing code, in a YAML/JSON file
given with ``--families FILE`` or ``$IFGUIDE_FAMILIES`` (or ``families.yaml`` in the workspace)::

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
from typing import TYPE_CHECKING

from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.extensions import MODEL_FAMILIES

if TYPE_CHECKING:
    from ifguide_cli.core.store.workspace import Workspace

FAMILIES_ENV = "IFGUIDE_FAMILIES"
WORKSPACE_FAMILIES_FILE = "families.yaml"


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


# every linear layer of the transformer blocks; the embedding / unembedding (vocab-sized) is not tracked
GPT_NEOX = ModuleFamily("gpt_neox", ("gpt_neox.layers.*.attention.query_key_value", "gpt_neox.layers.*.attention.dense",
                                     "gpt_neox.layers.*.mlp.dense_h_to_4h", "gpt_neox.layers.*.mlp.dense_4h_to_h"),
                        model_types=("gpt_neox",))
LLAMA = ModuleFamily("llama", ("model.layers.*.self_attn.q_proj", "model.layers.*.self_attn.k_proj",
                               "model.layers.*.self_attn.v_proj", "model.layers.*.self_attn.o_proj",
                               "model.layers.*.mlp.gate_proj", "model.layers.*.mlp.up_proj", "model.layers.*.mlp.down_proj"),
                     model_types=("llama", "mistral", "qwen2"))
GPT2 = ModuleFamily("gpt2", ("transformer.h.*.attn.c_attn", "transformer.h.*.attn.c_proj",
                             "transformer.h.*.mlp.c_fc", "transformer.h.*.mlp.c_proj"),
                    model_types=("gpt2",))  # its Conv1D layers are converted to nn.Linear first


def builtin_families() -> dict[str, ModuleFamily]:
    """The families registered in `extensions.MODEL_FAMILIES` (a new built-in family is one entry there)."""
    return dict(MODEL_FAMILIES.items())


def _read_families_file(path: Path) -> dict[str, ModuleFamily]:
    from ifguide_cli.core.yamlfile import load_yaml_mapping  # JSON is YAML too

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
    families = builtin_families()
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
    for parent in list(model.modules()):
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


def resolve_family(mref, ws: Workspace, *, families_file: str | None = None, module_globs: tuple[str, ...] | None = None,
                   family_spec: dict | None = None) -> ModuleFamily:
    """The module family to track: a factors artifact's (`family_spec`), --modules globs, or the registry's (cheap:
    reads the model config only, so an unknown family fails before any data or weights are loaded)."""
    from ifguide_cli.core.models import model_family

    if family_spec is not None:
        return ModuleFamily(family_spec["name"], tuple(family_spec["modules"]), (), tuple(family_spec.get("exclude", ())),
                            source="factors artifact")
    if module_globs:
        return custom_family(list(module_globs))
    return find_family(model_family(mref), load_families(families_file, ws.root))
