"""Issue 26: a diverged run (a loss or a weight NaN or infinite) fails in one line, publishes nothing and keeps the
last good training state; a model with non-finite weights is refused before it is evaluated or fine-tuned."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from clikit import assert_one_line_error
from safetensors.torch import load_file

from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.models import check_finite_weights, load_config, load_model, resolve_model

torch.set_num_threads(1)

DIVERGING = ["--lr", "50", "--max-steps", "6", "--save-steps", "2", "--batch-size", "8", "--eval-docs", "8",
             "--logging-steps", "1"]


@pytest.mark.slow
def test_a_diverging_run_fails_publishes_nothing_and_keeps_finite_resumable_state(cli, workspace_dir):
    result = cli("train", "tiny", "--data", "tiny", *DIVERGING)
    # six steps on purpose: the short run's coverage warning comes first, then the one error line
    assert_one_line_error(result, "non-finite", "no checkpoint was published", "--lr", warnings=1)
    assert not list(workspace_dir.glob("checkpoints/*"))
    saved = sorted((workspace_dir / ".staging").glob("checkpoints-*/trainer/checkpoint-*"))
    assert saved, "the last good training state must be kept for a resume"
    for checkpoint in saved:
        weights = load_file(str(checkpoint / "model.safetensors"))
        assert all(bool(torch.isfinite(t).all()) for t in weights.values()), checkpoint.name


def test_the_guard_stops_the_run_at_the_first_check_after_a_non_finite_loss():
    from transformers import TrainerControl, TrainerState

    from ifguide_cli.core.training.trainer import NonFiniteGuard, NonFiniteTraining

    class Trainer:
        lam, asked = 1e300, []

        def non_finite(self, *, weights):
            self.asked.append(weights)
            return "the training loss" if len(self.asked) > 1 else None

    trainer = Trainer()
    guard, state = NonFiniteGuard(trainer), TrainerState(global_step=1, max_steps=10)
    guard.on_step_end(None, state, TrainerControl())  # nothing logged, saved or evaluated: no check, no sync
    assert trainer.asked == []
    guard.on_step_end(None, state, TrainerControl(should_save=True))
    assert trainer.asked == [True]  # a step about to save checks the weights too
    state.global_step = 2
    with pytest.raises(NonFiniteTraining, match=r"loss became non-finite .* step 2") as err:
        guard.on_step_end(None, state, TrainerControl(should_log=True))
    assert "--lambda" in err.value.hint


def _nan_model_folder(tmp_path: Path) -> Path:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_config(load_config(resolve_model("tiny")))
    with torch.no_grad():
        next(model.parameters()).fill_(math.nan)
    model.save_pretrained(tmp_path / "nan-model")
    return tmp_path / "nan-model"


def test_a_model_with_nan_weights_is_refused_when_loaded(tmp_path):
    folder = _nan_model_folder(tmp_path)
    mref = resolve_model("tiny")
    mref = type(mref)(str(folder), "local", str(folder), "tiny")
    with pytest.raises(IfguideError, match=r"non-finite .* weights"):
        load_model(mref)


def test_finite_weights_pass_the_check():
    from transformers import AutoModelForCausalLM

    check_finite_weights(AutoModelForCausalLM.from_config(load_config(resolve_model("tiny"))), "tiny")


def test_a_lambda_past_float32_is_refused_as_a_value():
    from ifguide_cli.core.training import TrainConfig

    with pytest.raises(IfguideError, match="--lambda must be in"):
        TrainConfig(lam=1e300)  # the objective's token weights are float32: this was an overflow inside the loss
    assert TrainConfig(lam=1e30).lam == 1e30  # representable: a run with it diverges and the guard stops it
