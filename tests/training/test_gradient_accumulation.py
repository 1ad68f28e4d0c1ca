"""The Trainer update equals a plain loop: gradient accumulation of k micro-batches = one big batch.

This is the transformers 5.x trap: a `compute_loss` override on a model that accepts loss kwargs (GPT-NeoX)
had its update scaled by the accumulation factor (4× too large with 4 micro-batches) unless the subclass sets
`model_accepts_loss_kwargs = False`, as `PenaltyTrainer` does. SGD (not Adam, which hides a gradient scale)
makes any mis-scaling visible in the weights.
"""

from __future__ import annotations

import pytest
import torch

from ifguide_cli.core.data.rows import CorpusRows
from ifguide_cli.core.training.objective import labels_from_attention, penalty_loss
from ifguide_cli.core.training.trainer import PenaltyTrainer

torch.set_num_threads(1)


def _model():
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(0)
    cfg = GPTNeoXConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                        max_position_embeddings=32, hidden_dropout=0.0, attention_dropout=0.0)
    return GPTNeoXForCausalLM(cfg)


def _data(n=16, t=12):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 40, (n, t), generator=g)
    attn = torch.ones_like(ids)
    lengths = torch.randint(4, t + 1, (n,), generator=g)  # ragged rows: micro-batches hold different token counts
    for i, length in enumerate(lengths):
        attn[i, length:] = 0
    mask = (torch.rand(n, t, generator=g) < 0.25) & attn.bool()
    return ids, attn, mask


def _trainer_weights(tmp_path, micro: int, accum: int, steps: int, lam: float):
    from transformers import PrinterCallback, TrainingArguments

    ids, attn, mask = _data()
    model = _model()
    args = TrainingArguments(
        output_dir=str(tmp_path / f"out-{micro}-{accum}"), per_device_train_batch_size=micro,
        gradient_accumulation_steps=accum, max_steps=steps, learning_rate=0.5, optim="sgd", lr_scheduler_type="constant",
        weight_decay=0.0, max_grad_norm=0.0, use_cpu=True, remove_unused_columns=False, report_to=[], save_strategy="no",
        logging_steps=1, disable_tqdm=True, seed=0, dataloader_drop_last=True,
    )
    trainer = PenaltyTrainer(model=model, args=args, train_dataset=CorpusRows(ids, attn, mask=mask), lam=lam)
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _plain_loop_weights(steps: int, lam: float):
    ids, attn, mask = _data()
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    labels = labels_from_attention(ids, attn)
    for _ in range(steps):  # every optimizer step sees the whole (16-row) dataset: order cannot matter
        loss = penalty_loss(model(input_ids=ids, attention_mask=attn).logits, labels, mask, lam)
        loss.backward()
        opt.step()
        opt.zero_grad()
    return model.state_dict()


@pytest.mark.parametrize("micro,accum", [(16, 1), (4, 4), (2, 8)])
def test_trainer_update_equals_plain_loop(tmp_path, micro, accum):
    expected = _plain_loop_weights(steps=2, lam=1.0)
    got = _trainer_weights(tmp_path, micro, accum, steps=2, lam=1.0)
    for name, value in expected.items():
        assert torch.allclose(got[name], value, atol=1e-5), name


def test_plain_objective_without_mask_matches_model_loss_through_trainer(tmp_path):
    """λ only matters on masked tokens: with λ=0 the update is the one of CE on ordinary tokens."""
    expected = _plain_loop_weights(steps=1, lam=0.0)
    got = _trainer_weights(tmp_path, 4, 4, steps=1, lam=0.0)
    for name, value in expected.items():
        assert torch.allclose(got[name], value, atol=1e-5), name
