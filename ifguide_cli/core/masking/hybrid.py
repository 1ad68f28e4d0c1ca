"""The `hybrid` mask source: influence scores weighted by a toxicity classifier's probability of the span around
each token, then paper Alg. 1 (quantile τ, harmonic document ranking, budgeted walk) on the weighted scores.

Why a weighting, and which. The two cheap signals fail in opposite ways. Influence (Sec. 3 of the paper) ranks
tokens by what they do to the model, which no classifier sees, but on a small model and few queries its top
quantile holds many tokens of benign text. A classifier finds offensive spans but cannot say which of their
tokens matter to the model, and gives every token of a flagged span the same score. The weighting keeps both:

- ``product`` (default): w_t = S_t · P_t, with S_t the token's influence score and P_t the highest classifier
  probability of a span covering it. A token needs both a large influence and a likely-toxic span; a token of a
  clean span is damped by its small P rather than excluded, so strong influence can still surface toxicity the
  classifier misses. Alg. 1's strength (the sum of a document's scores above τ) keeps influence's scale, so
  the documents rank by how much toxic-span influence they hold. Negative influence (tokens that push towards
  the safe continuations) stays negative: never selected, however toxic the span reads.
- ``rank``: w_t = r(S_t) · r(P_t), the product of the two percentile ranks over the counted positions. It
  ignores the scale of either signal (heavy-tailed influence scores, an uncalibrated classifier), at the price
  of the magnitude information the product keeps.

The classifier scores spans of ``span_window`` tokens every ``span_stride`` tokens within each document part of
a row, exactly as ``ifguide mask classifier --level token`` does (`evidence.classifier_evidence`), so a token's P
is the one that source would give it. Memory grows with the corpus: the classifier's probabilities and the
weighted tensor are whole float32 copies (4 bytes per token each; the scores themselves are read whole for the
weighting), while the mask is written into its file a block of rows at a time as `mask select` writes it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from ifguide_cli.core.classifiers.spec import ClassifierOptions
from ifguide_cli.core.config import param
from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.masking.config import MaskConfig
from ifguide_cli.core.masking.source import MaskRefs, MaskSourceEntry, MaskSourceStage
from ifguide_cli.core.stage import ArtifactKey

if TYPE_CHECKING:
    import numpy as np

    from ifguide_cli.core.store.workspace import BuildContext, Workspace

ALGORITHM = "ifguide hybrid mask v1 (classifier-weighted influence, Alg. 1)"


@dataclass(frozen=True)
class HybridConfig(MaskConfig, ClassifierOptions):
    """Alg. 1's p, w and L (applied to the weighted scores), the classifier and its spans, and the combination."""

    classifier: str = param("profanity", "Classifier whose span probability weights the influence scores (as for "
                                         "`mask classifier`).", complete="classifiers")
    combine: Literal["product", "rank"] = param(
        "product", "product: influence score × span probability; rank: product of their percentile ranks.")
    span_window: int = param(16, "Tokens per classified span.", low=1)
    span_stride: int = param(8, "Tokens from one span's start to the next (at most --span-window).", low=1)
    device: str = param("auto", "Where the classifier runs: auto | cpu | cuda[:N].")

    def check(self) -> None:
        if self.span_stride > self.span_window:
            raise IfguideError(f"--span-stride {self.span_stride} is longer than --span-window {self.span_window}: "
                               "spans would skip tokens", hint=f"pass --span-stride {self.span_window} or less", exit_code=2)

    def selection(self) -> MaskConfig:
        """Alg. 1's parameters alone."""
        return MaskConfig(threshold=self.threshold, window=self.window, max_tokens=self.max_tokens)

    def spans(self):
        """The span settings as the classifier source's config (its weights' options included)."""
        from ifguide_cli.core.masking.source_config import ClassifierMaskConfig

        weights = {f.name: getattr(self, f.name) for f in fields(ClassifierOptions)}
        return ClassifierMaskConfig(classifier=self.classifier, level="token", window=self.span_window,
                                    stride=self.span_stride, device=self.device, **weights)


@dataclass(frozen=True)
class HybridMaskKey(ArtifactKey):
    """The influence mask's identity (scores, dataset, positions, Alg. 1) plus the classifier, spans and combination."""

    kind: ClassVar[str] = "masks"
    source: str = "hybrid"
    combine: str = "product"
    classifier: dict[str, Any] | None = None
    span_window: int = 16
    span_stride: int = 8
    threshold: float = 0.99
    window: int = 1
    max_tokens: int = 0
    scores: str | None = None
    scores_file: dict[str, Any] | None = None
    scores_key: str | None = None
    dataset: str | None = None
    positions: str = "all"
    algorithm: str = ALGORITHM


@dataclass(frozen=True)
class HybridInputs:
    ws: Any
    mask: Any  # masking.stage.MaskInputs: the scores, their dataset and the positions counted


class HybridMaskStage(MaskSourceStage):
    """`ifguide mask hybrid SCORES`: Alg. 1 on influence scores weighted by a classifier's span probability."""

    def prepare(self, ws: Workspace, config: HybridConfig) -> None:
        _classifier(ws, config)

    def inputs(self, ws: Workspace, refs: MaskRefs) -> HybridInputs:
        from ifguide_cli.core.masking.stage import InfluenceMaskStage

        mask = InfluenceMaskStage(self.reporter).inputs(ws, refs)
        if mask.source.dataset is None:
            raise IfguideError(f"mask hybrid needs the text behind the scores, and {refs.scores} names no dataset",
                               hint="pass --data DATASET (the dataset artifact the score file indexes)", exit_code=2)
        return HybridInputs(ws, mask)

    def key(self, inputs: HybridInputs, config: HybridConfig) -> HybridMaskKey:
        from ifguide_cli.core.masking.stage import InfluenceMaskStage

        base = InfluenceMaskStage().key(inputs.mask, config.selection())
        spec = _classifier(inputs.ws, config)
        return HybridMaskKey(parents=(*base.parents, *spec.parents), combine=config.combine, classifier=spec.identity,
                             span_window=config.span_window, span_stride=config.span_stride,
                             threshold=config.threshold, window=config.window, max_tokens=config.max_tokens,
                             scores=base.scores, scores_file=base.scores_file, scores_key=base.scores_key,
                             dataset=base.dataset, positions=base.positions)

    def describe(self, inputs: HybridInputs, config: HybridConfig) -> str:
        return f"weight the influence scores by {config.classifier} ({config.combine}), then Alg. 1"

    def build(self, ctx: BuildContext, inputs: HybridInputs, config: HybridConfig) -> dict[str, Any]:
        from ifguide_cli.core.masking.mask_file import MaskFile
        from ifguide_cli.core.masking.select import select_toxic_tokens
        from ifguide_cli.core.masking.stage import label_summary, write_mask
        from ifguide_cli.core.store.artifact_files import MASK_FILE

        src = inputs.mask.source
        with ctx.timed("classify"):
            probability, spans = span_probability(inputs.ws, src.dataset, config, self.reporter)
        with ctx.timed("select"):
            weighted = combine(src.scores[:], probability, config.combine, None if src.valid is None else src.valid[:])
            res = select_toxic_tokens(weighted, config.selection(), src.valid, reporter=self.reporter,
                                      out=MaskFile(ctx.staging / MASK_FILE, weighted.shape))
        with ctx.timed("write"):
            write_mask(ctx.staging / MASK_FILE, res)
        return {**res.summary(), "source": "hybrid", "combine": config.combine, "classifier": config.classifier,
                "span_window": config.span_window, "span_stride": config.span_stride, "spans_scored": spans,
                "scores": src.scores_art.id if src.scores_art is not None else str(src.scores_file),
                "dataset": src.dataset.id, **label_summary(src.dataset, res, src.rows)}


def _classifier(ws: Workspace, config: HybridConfig):
    from ifguide_cli.core.classifiers import resolve_classifier

    return resolve_classifier(config.classifier, ws, checkpoint=config.classifier_checkpoint,
                              base=config.classifier_base, path=config.classifier_path)


def span_probability(ws: Workspace, dataset, config: HybridConfig, reporter) -> tuple[np.ndarray, int]:
    """(per token, the highest probability of a classified span covering it (0 where there is no text); spans)."""
    from ifguide_cli.core.classifiers import load_classifier
    from ifguide_cli.core.dist import resolve_device
    from ifguide_cli.core.masking.evidence import classifier_evidence
    from ifguide_cli.core.masking.row_text import RowText

    classifier = load_classifier(_classifier(ws, config), device=resolve_device(config.device),
                                 batch_size=config.classifier_batch_size)

    def classify(texts: list[str]) -> list[float]:
        return classifier.score(texts)[classifier.primary]

    ev = classifier_evidence(RowText(ws, dataset), classify, config.spans(), reporter)
    return ev.scores, int(ev.stats.get("spans_scored", 0))


def combine(scores: np.ndarray, probability: np.ndarray, how: str, valid: np.ndarray | None = None) -> np.ndarray:
    """The weighted scores (float32, the scores' shape): S·P, or r(S)·r(P) over the counted positions (`valid`)."""
    import numpy as np

    s = np.asarray(scores, dtype=np.float32)
    p = np.asarray(probability, dtype=np.float32)
    if how == "product":
        return s * p
    counted = np.ones(s.shape, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    return np.where(counted, _percentile(s, counted) * _percentile(p, counted), 0).astype(np.float32)


def _percentile(values: np.ndarray, counted: np.ndarray) -> np.ndarray:
    """Each value's share of the counted values at or below it (ties share the highest rank), in (0, 1]."""
    import numpy as np

    pool = np.sort(values[counted])
    return (np.searchsorted(pool, values, side="right") / max(pool.size, 1)).astype(np.float32)


HYBRID_SOURCE = MaskSourceEntry(
    "hybrid", HybridConfig, "ifguide_cli.core.masking.hybrid:HybridMaskStage", "scores", command="hybrid",
    help="Build a mask from influence scores weighted by a toxicity classifier's span probability (score × P(toxic "
         "| span), or the product of their ranks), selected by Alg. 1.\n\nThe dataset comes from the scores artifact "
         "(or --data for a score file); the classifier scores spans of its text as `mask classifier` does.",
    examples=("ifguide mask hybrid tiny-scores --classifier profanity --name tiny-hybrid",
              "ifguide mask hybrid latest:scores --combine rank -L 50000"),
    scores=True, inherits=("threshold", "window", "max_tokens"))
