"""Run the ifguide command line in this process, SIGKILLed at the end of optimizer step K: a crash mid-training.

    python tests/training/kill_after_step.py K [ifguide arguments...]

It appends a callback to `ifguide_cli.core.training.checkpoint.EXTRA_CALLBACKS` (the package's extension point for
extra Trainer callbacks), then runs `ifguide` with the remaining arguments. The kill lands in `on_step_end`, before
the Trainer saves step K's checkpoint, so the staging folder holds the checkpoints of the steps before it. Used by
the kill-and-resume tests and by `benchmarks/fault_sweep.py`.
"""

from __future__ import annotations

import os
import signal
import sys

from transformers import TrainerCallback


class KillAfterStep(TrainerCallback):
    """SIGKILL this process once the Trainer has finished optimizer step `step`."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kw):
        if state.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    step, *cli_args = sys.argv[1:]
    from ifguide_cli.__main__ import main as ifguide
    from ifguide_cli.core.training.checkpoint import EXTRA_CALLBACKS

    EXTRA_CALLBACKS.append(lambda: KillAfterStep(int(step)))
    sys.argv = ["ifguide", *cli_args]
    ifguide()


if __name__ == "__main__":
    main()
