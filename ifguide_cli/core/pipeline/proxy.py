"""The proxy model of a pipeline (`influence.proxy`): a smaller model that fits the factors and scores the tokens,
whose mask then trains the bigger target (the paper scores with Pythia-160M and trains 1B-class targets, 7.5× the
parameters; IF-Guide §5).

A checkpoint (a workspace artifact or a saved model folder) is taken as it is. Any other name (registry, hub id) is
an architecture the run trains from scratch on the run's own dataset artifact, so it reads the same token ids as
the target. A mask lines up with the target's tokens only when both models read one tokenizer: a taken proxy whose
tokenizer is another is refused before any work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.pipeline.spec import PipelineSpec

if TYPE_CHECKING:
    from ifguide_cli.core.store.workspace import Workspace

TAKEN_SOURCES = ("checkpoint", "local")  # a proxy with its own weights: used as it is, not trained


@dataclass(frozen=True)
class Proxy:
    """The proxy the influence stages run on: its reference, and whether the run trains it (else it is taken)."""

    ref: str
    trained: bool
    model: Any = None  # its ModelRef

    def describe(self) -> str:
        return f"the proxy {self.ref}" + ("" if self.trained else " (taken as it is)")


def run_proxy(ws: Workspace, spec: PipelineSpec, target) -> Proxy | None:
    """The pipeline's proxy (None: the influence stages run on the baseline), checked against the target (its
    ModelRef, None when it is not known): one line when it cannot score for it."""
    from ifguide_cli.core.models import resolve_model

    ref = spec.influence.proxy
    if ref is None:
        return None
    try:
        mref = resolve_model(ref, ws)
    except IfguideError as exc:
        raise IfguideError(f"influence.proxy: {exc.message}", hint=exc.hint, exit_code=2) from None
    proxy = Proxy(ref, trained=mref.source not in TAKEN_SOURCES, model=mref)
    if not proxy.trained and spec.influence.proxy_train:
        raise IfguideError(f"influence.proxy_train does not apply: the proxy {ref} is a checkpoint, taken as it is",
                           hint="drop proxy_train, or name an architecture (e.g. tiny) for the run to train", exit_code=2)
    if not proxy.trained and target is not None and mref.tokenizer != target.tokenizer:
        raise IfguideError(f"influence.proxy {ref} reads tokenizer {mref.tokenizer}, the target {target.ref} reads "
                           f"{target.tokenizer}: the proxy's mask would not line up with the target's tokens",
                           hint="use a proxy with the target's tokenizer (or an architecture the run trains on its data), "
                                "or carry a mask across tokenizers with `ifguide mask transfer`", exit_code=2)
    return proxy
