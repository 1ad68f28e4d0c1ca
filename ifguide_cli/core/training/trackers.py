"""`--report-to`: the experiment trackers the HF Trainer logs to, and the stage summary sent to them too.

The Trainer's own integrations do the logging (nothing home-made); this module only decides which ones run,
refuses in one line a tracker whose package is missing, and hands the checkpoint's summary (its numeric
figures, under ``ifguide/``) to the same integrations after training. The default is what works offline with
no account: TensorBoard event files in the artifact when the package is installed, else none. Offline modes:
``WANDB_MODE=offline``; ``MLFLOW_TRACKING_URI=file:/path/mlruns`` (a local store); trackio is local-first.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from ifguide_cli.core.errors import IfguideError

# tracker → the packages any one of which provides it
TRACKERS: dict[str, tuple[str, ...]] = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",),
                                        "mlflow": ("mlflow",), "trackio": ("trackio",)}
CHOICES = ("none", *TRACKERS, "all")


def installed(tracker: str) -> bool:
    return any(importlib.util.find_spec(name) is not None for name in TRACKERS[tracker])


def resolve_trackers(requested: str | None) -> list[str]:
    """The trackers of `--report-to` (comma-separated); None: tensorboard if installed; `all`: every installed one."""
    if requested is None:
        return ["tensorboard"] if installed("tensorboard") else []
    names = [n.strip() for n in requested.split(",") if n.strip()]
    unknown = [n for n in names if n not in CHOICES]
    if unknown or not names:
        raise IfguideError(f"--report-to {requested!r}: unknown tracker {', '.join(unknown) or '(none given)'}",
                           hint=f"choose from {', '.join(CHOICES)} (comma-separated)", exit_code=2)
    if "none" in names:
        return []
    if "all" in names:
        return [t for t in TRACKERS if installed(t)]
    missing = [n for n in names if not installed(n)]
    if missing:
        raise IfguideError(f"--report-to {','.join(missing)} needs the {missing[0]} package, which is not installed",
                           hint=f"pip install {' '.join(TRACKERS[m][0] for m in missing)}", exit_code=2)
    return names


def summary_scalars(summary: dict[str, Any]) -> dict[str, float]:
    """The summary's numeric figures, named ``ifguide/<field>`` (booleans and text are left out)."""
    return {f"ifguide/{k}": float(v) for k, v in summary.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def send_summary(trainer, summary: dict[str, Any]) -> None:
    """Give the stage summary to the Trainer's tracker integrations, then let them close their runs again."""
    integrations = [cb for cb in trainer.callback_handler.callbacks
                    if type(cb).__module__.startswith("transformers.integrations")]
    scalars = summary_scalars(summary)
    for callback in integrations:
        callback.on_log(trainer.args, trainer.state, trainer.control, logs=scalars)
        callback.on_train_end(trainer.args, trainer.state, trainer.control)
