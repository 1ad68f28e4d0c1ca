"""Installing RAD's reward model: the `rad download` stage, from a download, an archive or a local weights file.

The source (`rad.source`: an https download checked against a sha256, RAD's release archive read member by member
with limits, or a local file or folder) is read in `inputs`, where the weights are loaded safely (safetensors, or
`torch.load(weights_only=True)`), their key names normalised to `decoding.RewardModel`'s and the model built from
their shapes; its identity (`RewardModelKey`) is what the weights and vocabulary are, not where they came from, so
the same weights from the archive or the bare `.bin` are one artifact. `build` writes it as a `classifiers` artifact
named `rad-reward`: `reward_model/{config.json, model.safetensors, tokenizer files}` plus `classifier.json`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from ifguide_cli.core.errors import IfguideError, OfflineResourceMissing
from ifguide_cli.core.progress import NULL, Reporter
from ifguide_cli.core.rad.decoding import (
    OUTPUT_NAMES,
    REWARD_DIR,
    REWARD_FILE,
    REWARD_INDEX,
    REWARD_NAME,
    RewardModel,
    infer_config,
    normalise_state_dict,
)
from ifguide_cli.core.rad.source import checked_sha256, extract_from_zip, fetch_source, valid_sha256
from ifguide_cli.core.stage import ArtifactKey, Result, Stage, run_stage
from ifguide_cli.core.store.manifests import sha256_file

if TYPE_CHECKING:
    from ifguide_cli.core.store.workspace import BuildContext, Workspace


# ---- reading the source --------------------------------------------------------------------------
def _find_weights(folder: Path) -> Path:
    for pattern in ("**/gpt2_toxicity/pytorch_model.bin", "**/*toxic*/*.bin", "model.safetensors", "**/*.safetensors",
                    "**/pytorch_model.bin", "**/*.bin", "**/*.pt", "**/*.pth"):
        found = sorted(folder.glob(pattern))
        if found:
            return found[0]
    raise IfguideError(f"no reward-model weights in {folder}",
                       hint="expected saved_models/gpt2_toxicity/pytorch_model.bin (RAD's release) or model.safetensors",
                       exit_code=2)


def _load_state(weights: Path, label: str) -> dict:
    """The raw state dict of a weights file, loaded safely (safetensors, or torch.load(weights_only=True)).

    `label` is what an error calls the file: its path, or `ARCHIVE.zip: member` for a file from an archive.
    """
    import pickle

    try:
        if weights.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(weights))
        raw = torch.load(str(weights), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
        why = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
        raise IfguideError(f"{label} is not a loadable state dict ({why})", exit_code=2) from None
    except Exception as exc:  # safetensors' own error type
        raise IfguideError(f"{label} is not a loadable state dict ({type(exc).__name__})", exit_code=2) from None
    if isinstance(raw, dict) and "state_dict" in raw:
        raw = raw["state_dict"]
    if not isinstance(raw, dict):
        raise IfguideError(f"{label} is not a state dict", exit_code=2)
    return raw


def read_reward_source(source: Path, workdir: Path) -> tuple[Path, dict, dict | None, Path | None]:
    """(weights file, normalised state dict, config.json dict or None, tokenizer folder or None)."""
    archive = source if source.suffix == ".zip" else None
    if archive is not None:
        source = extract_from_zip(archive, workdir)
    weights = _find_weights(source) if source.is_dir() else source
    label = f"{archive.name}: {weights.relative_to(workdir)}" if archive is not None else str(weights)
    folder = weights.parent
    config = None
    if (folder / "config.json").is_file():
        try:
            config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        except (ValueError, OSError, RecursionError):
            raise IfguideError(f"{label}: the config.json beside it is not valid JSON", exit_code=2) from None
        config = config if isinstance(config, dict) else None
    has_tok = any((folder / f).is_file() for f in ("tokenizer.json", "vocab.json"))
    return weights, normalise_state_dict(_load_state(weights, label)), config, (folder if has_tok else None)


def _reward_tokenizer(tok_dir: Path | None, tokenizer: str | None):
    """The reward model's tokenizer: --tokenizer, else the one next to the weights, else gpt2 (hub or cache)."""
    from transformers import AutoTokenizer

    from ifguide_cli.core.hub import hub_resource

    tok_source = tokenizer or (str(tok_dir) if tok_dir else "gpt2")
    if Path(tok_source).expanduser().is_dir():
        return AutoTokenizer.from_pretrained(str(Path(tok_source).expanduser()), trust_remote_code=False)
    try:
        with hub_resource("tokenizer", tok_source, "--tokenizer DIR (a folder with the gpt2 tokenizer files)"):
            return AutoTokenizer.from_pretrained(tok_source, trust_remote_code=False)
    except OfflineResourceMissing as exc:
        raise OfflineResourceMissing(f"the reward model needs its tokenizer ({tok_source}), which is not available offline",
                                     hint="pass --tokenizer DIR: a folder with the gpt2 tokenizer files "
                                          "(tokenizer.json, or vocab.json + merges.txt)") from exc


def _reward_model(state: dict, given_config: dict | None, tok) -> RewardModel:
    """The reward model built from the weights' shapes, with every weight in place and a vocabulary that fits."""
    config = infer_config(state, given_config, tok.eos_token_id)
    rm = RewardModel(config, state["head.weight"].shape[0])
    missing, unexpected = rm.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise IfguideError(f"the weights do not fit a GPT-2 reward model (missing {missing[:3]}, unexpected {unexpected[:3]})",
                           exit_code=2)
    if len(tok) > config.vocab_size:
        raise IfguideError(f"tokenizer has {len(tok)} tokens but the reward model only {config.vocab_size}",
                           hint="pass the tokenizer the reward model was trained with (--tokenizer)", exit_code=2)
    return rm


# ---- the stage -----------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class RewardModelKey(ArtifactKey):
    """What identifies an installed reward model: its weights, its vocabulary and its shapes."""

    kind: ClassVar[str] = "classifiers"
    backend: str = field(default="rad-reward", init=False)
    weights_sha256: str
    tokenizer_vocab_sha256: str
    architecture: dict[str, int]  # n_layer, n_head, n_embd, vocab_size, n_positions


@dataclass(frozen=True)
class RewardModelRefs:
    """What `ifguide rad download` is given: where the weights come from, their tokenizer, their expected sha256."""

    source: str | None = None  # a local archive, weights file or folder (--from)
    url: str | None = None  # else a download (default: RAD's release)
    tokenizer: str | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class RewardModelInputs:
    """The reward model built from the source's weights, its tokenizer, and where it came from."""

    model: RewardModel
    tokenizer: Any
    weights_sha256: str
    origin: dict[str, Any]  # the summary's source, source_sha256 and weights_sha256


class RewardModelStage(Stage[RewardModelRefs, RewardModelInputs, None, dict[str, Any]]):
    """`ifguide rad download`: RAD's toxicity reward model as a `classifiers` artifact named `rad-reward`."""

    kind = "classifiers"

    def __init__(self, reporter: Reporter = NULL):
        self.reporter = reporter

    def inputs(self, ws: Workspace, refs: RewardModelRefs) -> RewardModelInputs:
        sha256 = valid_sha256(refs.sha256)
        src, origin = fetch_source(ws, refs.source, refs.url, sha256, self.reporter)
        source_sha = checked_sha256(src, sha256)
        (ws.root / ".staging").mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="rad-source-", dir=str(ws.root / ".staging")))
        try:
            weights, state, given_config, tok_dir = read_reward_source(src, work)
            weights_sha = sha256_file(weights)
            tok = _reward_tokenizer(tok_dir, refs.tokenizer)
            rm = _reward_model(state, given_config, tok)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        summary = {"source": origin.get("url") or origin.get("from"), "source_sha256": source_sha,
                   "weights_sha256": weights_sha}
        return RewardModelInputs(rm, tok, weights_sha, summary)

    def key(self, inputs: RewardModelInputs, config: None) -> RewardModelKey:
        vocab_sha = hashlib.sha256(json.dumps(sorted(inputs.tokenizer.get_vocab().items())).encode()).hexdigest()
        shapes = {k: getattr(inputs.model.config, k) for k in ("n_layer", "n_head", "n_embd", "vocab_size", "n_positions")}
        return RewardModelKey(weights_sha256=inputs.weights_sha256, tokenizer_vocab_sha256=vocab_sha, architecture=shapes)

    def describe(self, inputs: RewardModelInputs, config: None) -> str:
        return f"install the RAD reward model from {inputs.origin['source']}"

    def build(self, ctx: BuildContext, inputs: RewardModelInputs, config: None) -> dict[str, Any]:
        """reward_model/{config.json, model.safetensors, tokenizer files} and classifier.json."""
        from safetensors.torch import save_file

        rm, tok = inputs.model, inputs.tokenizer
        names = OUTPUT_NAMES if rm.num_outputs == len(OUTPUT_NAMES) else [f"output_{i}" for i in range(rm.num_outputs)]
        out = ctx.staging / REWARD_DIR
        out.mkdir(exist_ok=True)
        meta = {**rm.config.to_dict(), "num_outputs": rm.num_outputs, "reward_index": REWARD_INDEX, "output_names": names}
        (out / "config.json").write_text(json.dumps(meta, indent=2))
        save_file({k: v.contiguous() for k, v in rm.state_dict().items()}, str(out / REWARD_FILE))
        tok.save_pretrained(str(out))
        (ctx.staging / "classifier.json").write_text(json.dumps(
            {"backend": "rad-reward", "attributes": names, "reward_index": REWARD_INDEX}, indent=2))
        return {"name": REWARD_NAME, "backend": "rad-reward", **inputs.origin, "outputs": rm.num_outputs,
                "reward_output": names[REWARD_INDEX], "params": sum(p.numel() for p in rm.parameters()),
                "n_layer": rm.config.n_layer, "n_embd": rm.config.n_embd, "vocab_size": rm.config.vocab_size}


def install_reward_model(workspace: Workspace, *, source: str | None = None, url: str | None = None,
                         tokenizer: str | None = None, sha256: str | None = None, force: bool = False,
                         reporter: Reporter = NULL) -> Result[dict[str, Any]]:
    """Install RAD's reward model as a `classifiers` artifact named `rad-reward` (the stage from its references)."""
    stage = RewardModelStage(reporter)
    inputs = stage.inputs(workspace, RewardModelRefs(source, url, tokenizer, sha256))
    return run_stage(workspace, stage, inputs, None, name=REWARD_NAME, force=force)
