"""Toxicity classifiers: Detoxify, ToxiGen-RoBERTa, and the built-in offline profanity classifier.

Every backend turns a list of texts into one probability per text and attribute
(`Classifier.score(texts) -> {attribute: [float]}`); the first attribute is the headline one
(`toxicity` for Detoxify and ToxiGen, `profanity` for the built-in classifier).

- `spec`: what `--classifier NAME` (and its files) resolves to, failing offline in one line before loading.
- `detoxify_models`: Detoxify checkpoints, built through the `detoxify` package's own code.
- `backends`: the scoring classes and `load_classifier`.
- `register`: `ifguide eval add-classifier`.
"""

from ifguide_cli.core.classifiers.backends import Classifier, ProfanityClassifier, SequenceClassifier, load_classifier
from ifguide_cli.core.classifiers.detoxify_models import (
           DETOXIFY_BASES,
           build_detoxify,
           detoxify_missing_hint,
           read_detoxify_checkpoint,
)
from ifguide_cli.core.classifiers.register import register_classifier
from ifguide_cli.core.classifiers.spec import (
           BUILTIN,
           CLASSIFIER_FILE,
           TOXIGEN_HUB_ID,
           ClassifierOptions,
           ClassifierSpec,
           known_names,
           resolve_classifier,
)

__all__ = ["BUILTIN", "CLASSIFIER_FILE", "DETOXIFY_BASES", "TOXIGEN_HUB_ID", "Classifier", "ClassifierOptions",
           "ClassifierSpec", "ProfanityClassifier", "SequenceClassifier", "build_detoxify", "detoxify_missing_hint",
           "known_names", "load_classifier", "read_detoxify_checkpoint", "register_classifier", "resolve_classifier"]
