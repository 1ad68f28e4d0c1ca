"""`finetune --lora-rank R --merge`: a LoRA checkpoint's adapter merged into its base, as a checkpoint of its own.

The merged checkpoint is an ordinary `checkpoints` artifact (full weights in ``model/``, loadable by any tool
with ``from_pretrained``) whose parent is the LoRA checkpoint; it keeps that checkpoint's tokenizer, family,
dataset and profile, so data tokenized for the base is reused and `finetune` on it picks the same profile.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.stage import ArtifactKey, Result, Stage, run_stage

if TYPE_CHECKING:
    from ifguide_cli.core.models import ModelRef
    from ifguide_cli.core.store.workspace import Artifact, BuildContext, Workspace


@dataclass(frozen=True)
class MergeRefs:
    checkpoint: str  # a LoRA checkpoint (id, name, `latest`)


@dataclass(frozen=True)
class MergeInputs:
    checkpoint: Artifact
    model: ModelRef  # the checkpoint as a model: base + adapter


@dataclass(frozen=True)
class MergedKey(ArtifactKey):
    """A merged checkpoint is identified by the LoRA checkpoint it merges; the rest is carried over for lookups."""

    kind: ClassVar[str] = "checkpoints"
    merged_from: str = ""
    mode: str = "finetune"
    tokenizer: str = ""
    family: str | None = None
    dataset: str | None = None
    profile: str | None = None


class MergeStage(Stage[MergeRefs, MergeInputs, None, dict[str, Any]]):
    kind = "checkpoints"

    def inputs(self, ws: Workspace, refs: MergeRefs) -> MergeInputs:
        from ifguide_cli.core.models import resolve_model

        art = ws.resolve(refs.checkpoint, "checkpoints")
        mref = resolve_model(art.id, ws)
        if mref.adapter is None:
            raise IfguideError(f"checkpoint {art.id} holds full weights, not a LoRA adapter: there is nothing to merge",
                               hint="--merge applies to `finetune --lora-rank R`", exit_code=2)
        return MergeInputs(art, mref)

    def key(self, inputs: MergeInputs, config: None) -> MergedKey:
        c = inputs.checkpoint.config
        return MergedKey(parents=(inputs.checkpoint.id,), merged_from=inputs.checkpoint.id, tokenizer=c.get("tokenizer", ""),
                         family=c.get("family"), dataset=c.get("dataset"), profile=c.get("profile"))

    def describe(self, inputs: MergeInputs, config: None) -> str:
        return f"merge the LoRA adapter of {inputs.checkpoint.id} into its base"

    def build(self, ctx: BuildContext, inputs: MergeInputs, config: None) -> dict[str, Any]:
        from ifguide_cli.core.models import load_model, load_tokenizer

        with ctx.timed("merge"):
            model = load_model(inputs.model, from_scratch=False)
        with ctx.timed("write"):
            model.save_pretrained(str(ctx.staging / "model"), safe_serialization=True)
            load_tokenizer(inputs.model).save_pretrained(str(ctx.staging / "model"))
        lora = {k: inputs.checkpoint.summary.get(k) for k in ("lora_rank", "lora_alpha")}
        return {"merged_from": inputs.checkpoint.id, "parameters": sum(p.numel() for p in model.parameters()), **lora}


def merge_adapter(ws: Workspace, checkpoint_ref: str, *, name: str | None = None, force: bool = False) -> Result[dict[str, Any]]:
    """The merged checkpoint of a LoRA checkpoint (reused when it exists)."""
    stage = MergeStage()
    return run_stage(ws, stage, stage.inputs(ws, MergeRefs(checkpoint_ref)), None, name=name, force=force)
