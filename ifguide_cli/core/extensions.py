"""The extension points of ifguide, one registry each: a new mask source, classifier backend, model family or
preset is one line here (plus its own module). Nothing else lists them.

- `MASK_SOURCES`: name → a `masking.source.MaskSourceEntry` (its options, help, and stage). The `ifguide mask` subcommands, the
  choices of a pipeline arm's `source:` and the arms' stages are generated from it.
- `CLASSIFIER_BACKENDS`: a resolved classifier's ``backend`` → ``load(spec, device, batch_size) -> Classifier``.
- `MODEL_FAMILIES`: name → the `influence.families.ModuleFamily` (the layers influence tracks) built in.
- `PRESETS`: `ifguide run --preset NAME` → its pipeline file among the package's data files.

The targets are strings imported on first use (`lazy_registry`), so this module imports nothing of the
project but the mechanism: it is a leaf of the import graph, and reading it (the CLI's help) is instant.
"""

from __future__ import annotations

from ifguide_cli.core.lazy_registry import Registry, package_file

MASK_SOURCES: Registry = Registry("mask source", {
    "influence": "ifguide_cli.core.masking.config:INFLUENCE_SOURCE",
    "standard-influence": "ifguide_cli.core.masking.config:STANDARD_INFLUENCE_SOURCE",
    "classifier": "ifguide_cli.core.masking.source_config:CLASSIFIER_SOURCE",
    "wordlist": "ifguide_cli.core.masking.source_config:WORDLIST_SOURCE",
    "hybrid": "ifguide_cli.core.masking.hybrid:HYBRID_SOURCE",
})

CLASSIFIER_BACKENDS: Registry = Registry("classifier backend", {
    "profanity": "ifguide_cli.core.classifiers.backends:load_profanity",
    "detoxify": "ifguide_cli.core.classifiers.backends:load_detoxify_classifier",
    "seqcls": "ifguide_cli.core.classifiers.backends:load_sequence_classifier",
})

MODEL_FAMILIES: Registry = Registry("model family", {
    "gpt_neox": "ifguide_cli.core.influence.families:GPT_NEOX",
    "llama": "ifguide_cli.core.influence.families:LLAMA",
    "gpt2": "ifguide_cli.core.influence.families:GPT2",
})

PRESETS: Registry = Registry("preset", {
    "tiny": "ifguide_cli:assets/presets/tiny.yaml",
    "tiny-compare": "ifguide_cli:assets/presets/tiny-compare.yaml",
    "paper": "ifguide_cli:assets/presets/paper.yaml",
    "paper-finetune": "ifguide_cli:assets/presets/paper-finetune.yaml",
}, load=package_file, hint="use one of {names} or a YAML file")
