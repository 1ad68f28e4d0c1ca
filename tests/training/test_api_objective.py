"""The library's loss functions are `ifguide train`'s: `penalty_loss` (Eq. 9), `token_weights` (penalty and filter)
and `PenaltyTrainer` run with a user's own `TrainingArguments`."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

import ifguide_cli as ifg
from ifguide_cli.core.training import objective


def _batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(3, 7, 11, generator=g)
    labels = torch.randint(0, 11, (3, 7), generator=g)
    labels[2, 5:] = -100  # padding
    penalty = torch.rand(3, 7, generator=g) < 0.3
    return logits, labels, penalty


def _weighted_loop(logits, labels, weights):
    """A plain loop: Σ w[:, 1:]·CE(logits[:, :-1], labels[:, 1:]) / N."""
    ce = F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1), ignore_index=-100,
                         reduction="none").view(labels[:, 1:].shape)
    return (weights[:, 1:] * ce).sum() / labels[:, 1:].ne(-100).sum()


def test_penalty_loss_is_the_training_objective():
    assert ifg.penalty_loss is objective.penalty_loss and ifg.token_weights is objective.token_weights


@pytest.mark.parametrize(("suppression", "lam", "masked"), [("penalty", 1.5, -1.5), ("filter", 0.0, 0.0)])
def test_token_weights_give_the_loss_of_each_mode(suppression, lam, masked):
    logits, labels, penalty = _batch()
    w = ifg.token_weights(labels, penalty, lam, suppression)
    assert (w[:, 0] == 0).all() and (w[labels == -100] == 0).all()
    inside = penalty & labels.ne(-100)
    inside[:, 0] = False
    assert (w[inside] == masked).all() and (w[~inside & labels.ne(-100)][1:] >= 0).all()
    expected = ifg.penalty_loss(logits, labels, penalty, lam, suppression=suppression)
    torch.testing.assert_close(_weighted_loop(logits, labels, w), expected, rtol=1e-6, atol=1e-7)
    assert not torch.allclose(expected, ifg.penalty_loss(logits, labels, None))  # the masked tokens weigh


def _tiny_model():
    from transformers import AutoConfig, AutoModelForCausalLM

    from ifguide_cli.core.registry import tiny_asset

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(AutoConfig.for_model(**json.loads(tiny_asset("model_config.json").read_text())))


def test_penalty_trainer_with_the_users_own_arguments_keeps_the_mask(tmp_path):
    from transformers import TrainingArguments

    _, labels, penalty = _batch()
    rows = ifg.LoadedMask(labels.clamp(min=0), labels.ne(-100).long(), labels, penalty)
    args = TrainingArguments(output_dir=str(tmp_path), per_device_eval_batch_size=3, report_to=[], use_cpu=True)
    assert args.remove_unused_columns  # the default, which would drop the mask column
    model = _tiny_model()
    trainer = ifg.PenaltyTrainer(model=model, args=args, train_dataset=rows.torch_dataset(), lam=1.5)
    batch = next(iter(trainer.get_eval_dataloader(rows.torch_dataset())))  # the same column filter, rows in order
    assert torch.equal(batch["loss_mask"].cpu(), penalty)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        expected = ifg.penalty_loss(logits, labels, penalty, 1.5)
        assert torch.equal(trainer.compute_loss(model, dict(batch)), expected)
