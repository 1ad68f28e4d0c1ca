"""`ifguide env`: what this machine has — versions, devices, the workspace, the caches — and which registry
models, datasets and classifiers would load offline, and from where.

Everything here looks at local files only (the Hugging Face and torch hub caches, the workspace, the
package): it never opens a network connection, whatever HF_HUB_OFFLINE says, so it answers at once on a
machine without network, which is where the question matters.
"""

from __future__ import annotations

import importlib.util
import os
import platform
from contextlib import suppress
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from ifguide_cli.core.registry import CLASSIFIERS, DATASETS, MODELS, tiny_asset
from ifguide_cli.core.store.artifact_files import KINDS
from ifguide_cli.core.store.workspace import MANIFEST

if TYPE_CHECKING:
    from ifguide_cli.core.store.workspace import Workspace

PACKAGES = ("ifguide-cli", "torch", "transformers", "kronfluence", "detoxify", "datasets", "tokenizers",
            "huggingface_hub", "safetensors", "alt-profanity-check", "numpy", "typer", "rich")
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def environment(ws: Workspace) -> dict:
    """The whole report (the `--json` object of `ifguide env`)."""
    caches = hf_caches()
    return {"versions": versions(), "devices": devices(), "workspace": workspace_info(ws), "caches": caches,
            "models": [model_status(m, caches["hub_cache"]) for m in MODELS.values()],
            "datasets": [dataset_status(d, caches) for d in DATASETS.values()],
            "classifiers": [classifier_status(c, ws, caches["hub_cache"]) for c in CLASSIFIERS.values()]}


def versions() -> dict[str, str | None]:
    """Python and the installed version of each package that matters here (None: not installed)."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def devices() -> dict:
    """CUDA (device names, bf16 support) and the CPU count, as torch sees them."""
    info: dict = {"cpu_count": os.cpu_count(), "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
    try:
        import torch
    except ImportError:
        return {**info, "cuda": False, "error": "torch is not installed"}
    cuda = torch.cuda.is_available()
    info.update(cuda=cuda, torch_cuda=torch.version.cuda, gpus=[])
    if cuda:
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        info["bf16"] = bool(torch.cuda.is_bf16_supported())
    return info


def workspace_info(ws: Workspace) -> dict:
    """The workspace folder, its size on disk and its finished artifacts per kind."""
    root = Path(ws.root)
    counts = {}
    for kind in KINDS:
        folder = root / kind
        counts[kind] = sum(1 for e in folder.iterdir() if (e / MANIFEST).is_file()) if folder.is_dir() else 0
    staging = root / ".staging"
    return {"path": str(root), "exists": root.is_dir(), "bytes": _size(root), "artifacts": counts,
            "unfinished": sum(1 for _ in staging.iterdir()) if staging.is_dir() else 0}


def _size(folder: Path) -> int:
    total = 0
    for parent, _, files in os.walk(folder):
        for name in files:
            with suppress(OSError):
                total += os.lstat(os.path.join(parent, name)).st_size
    return total


def hf_caches() -> dict:
    """Where the Hugging Face libraries (and torch hub, for Detoxify checkpoints) keep their downloads."""
    from huggingface_hub import constants

    home = Path(constants.HF_HOME)
    return {"hf_home": str(home), "hub_cache": str(constants.HF_HUB_CACHE),
            "datasets_cache": os.environ.get("HF_DATASETS_CACHE") or str(home / "datasets"),
            "torch_hub": _torch_hub_dir(), "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE"),
            "HF_ENDPOINT": os.environ.get("HF_ENDPOINT")}


def _torch_hub_dir() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    return str(torch.hub.get_dir())


def _status(name: str, where: str | None, missing: str | None = None) -> dict:
    return {"name": name, "offline": where is not None, "where": where, "missing": None if where else missing}


def cached_file(repo_id: str, filename: str, hub_cache: str, repo_type: str | None = None) -> str | None:
    """The path of a file of a hub repo in the local cache, or None (never asks the network)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename, cache_dir=hub_cache, repo_type=repo_type)
    return found if isinstance(found, str) else None


def model_status(entry, hub_cache: str) -> dict:
    """A registry model loads offline when its config (and, if the paper fine-tunes it, its weights) and its
    tokenizer are in the hub cache; `tiny` ships in the package."""
    if entry.hub_id is None:
        return _status(entry.name, str(tiny_asset("model_config.json").parent))
    config = cached_file(entry.hub_id, "config.json", hub_cache)
    if config is None:
        return _status(entry.name, None, f"{entry.hub_id} config.json")
    if not entry.from_scratch and not any(cached_file(entry.hub_id, w, hub_cache) for w in _WEIGHTS):
        return _status(entry.name, None, f"{entry.hub_id} weights")
    if not (cached_file(entry.tokenizer, "tokenizer.json", hub_cache)
            or cached_file(entry.tokenizer, "tokenizer_config.json", hub_cache)):
        return _status(entry.name, None, f"{entry.tokenizer} tokenizer")
    return _status(entry.name, str(Path(config).parent))


def dataset_status(entry, caches: dict) -> dict:
    """A registry dataset loads offline from the package (`tiny*`), the hub cache, or the datasets cache."""
    if entry.hub_id is None:
        return _status(entry.name, str(tiny_asset(entry.files["train"])))
    owner, _, name = entry.hub_id.rpartition("/")
    candidates = [Path(caches["hub_cache"]) / f"datasets--{entry.hub_id.replace('/', '--')}" / "snapshots",
                  Path(caches["datasets_cache"]) / f"{owner}___{name}".lower()]
    where = next((str(p) for p in candidates if p.is_dir() and any(p.iterdir())), None)
    return _status(entry.name, where, f"{entry.hub_id} (dataset)")


def classifier_status(entry, ws: Workspace, hub_cache: str) -> dict:
    """Registered in the workspace (`eval add-classifier`, `rad download`), else the package or the caches."""
    registered = _registered(ws, entry.name)
    if registered is not None:
        return _status(entry.name, registered)
    if entry.backend == "profanity":
        spec = importlib.util.find_spec("profanity_check")
        where = str(Path(spec.origin).parent) if spec and spec.origin else None
        return _status(entry.name, where, "the alt-profanity-check package")
    if entry.backend == "detoxify":
        return _detoxify_status(entry.name, hub_cache)
    if entry.backend == "toxigen":
        from ifguide_cli.core.classifiers.spec import TOXIGEN_HUB_ID

        config = cached_file(TOXIGEN_HUB_ID, "config.json", hub_cache)
        return _status(entry.name, str(Path(config).parent) if config else None, f"{TOXIGEN_HUB_ID} (hub)")
    return _status(entry.name, None, "`ifguide rad download`")


def _detoxify_status(name: str, hub_cache: str) -> dict:
    try:
        from ifguide_cli.core.classifiers.detoxify_models import DETOXIFY_BASES, cached_checkpoint
        from ifguide_cli.core.classifiers.spec import detoxify_type_of

        model_type = detoxify_type_of(name)
        assert model_type is not None, "called for the detoxify-* classifiers only"
        checkpoint = cached_checkpoint(model_type)
    except ImportError as exc:
        return _status(name, None, f"the detoxify package ({exc.name})")
    if not checkpoint.is_file():
        return _status(name, None, f"{checkpoint.name} in {checkpoint.parent}")
    base = DETOXIFY_BASES[model_type]
    if cached_file(base, "config.json", hub_cache) is None:
        return _status(name, None, f"{base} config/tokenizer (hub)")
    return _status(name, str(checkpoint))


def _registered(ws: Workspace, name: str) -> str | None:
    """The folder of a `classifiers` artifact registered under this name, if any."""
    from ifguide_cli.core.errors import IfguideError

    try:
        return str(ws.resolve(name, "classifiers").path)
    except IfguideError:
        return None
