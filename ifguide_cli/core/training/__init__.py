"""Step 4 of IF-Guide: train from scratch or fine-tune with the penalty objective (paper Eq. 9).

The engine is the HF ``Trainer`` (one CPU, one GPU, or many under ``torchrun`` / ``accelerate launch``);
this package adds only what IF-Guide needs:

- ``config``: the typed configuration (`TrainConfig`, `RunOptions`, `SetupOptions`), the per-model
  profiles and their precedence (profile < ``--config`` file < options);
- ``stage``: `TrainStage` / `run_training`, which resolve model, corpus and mask and build (or reuse) the checkpoint;
- ``checkpoint``: the build itself (resume state, Trainer arguments, finalize), imported only when training;
- ``trainer``: `PenaltyTrainer` and its callbacks (imports transformers; imported only when training);
- ``metrics``: the checkpoint's figures (`token_nll`). The objective itself is ``core/objective.py``.

This module imports only the light parts, so the CLI can build its options from the configs at start-up.
"""

from ifguide_cli.core.training.config import PROFILES, RunOptions, SetupOptions, TrainConfig, batch_layout, resolve_config
from ifguide_cli.core.training.stage import TrainStage, run_training

__all__ = ["PROFILES", "RunOptions", "SetupOptions", "TrainConfig", "TrainStage", "batch_layout", "resolve_config",
           "run_training"]
