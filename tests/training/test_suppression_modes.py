"""Suppression modes (`--suppression penalty|filter|drop`): the objective's weights, the rows `drop` leaves out, the
training summary and identity, and `finetune --suppression drop` on the tiny data (fast)."""

from __future__ import annotations

import math

import pytest
import torch
from clikit import assert_one_line_error
from safetensors.torch import save_file

from ifguide_cli.core import notes
from ifguide_cli.core.data.rows import rows_without_masked
from ifguide_cli.core.training.config import TrainConfig
from ifguide_cli.core.training.objective import masked_weight, penalty_loss, penalty_terms, shifted_token_ce

torch.set_num_threads(1)

MICRO = ["--max-steps", "2", "--batch-size", "8", "--save-steps", "2", "--eval-docs", "8", "--logging-steps", "1"]


def _hand_example():
    # one row, 3 tokens, vocabulary of 2: predicting token 1 costs ln 2, predicting token 2 costs ln 4
    logits = torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0], [5.0, -5.0]]], requires_grad=True)
    return logits, torch.tensor([[1, 0, 1]]), torch.tensor([[False, False, True]])  # token 2 is masked


# ---- the objective ---------------------------------------------------------------------------------------
def test_filter_gives_masked_tokens_weight_zero_and_keeps_them_in_the_count():
    logits, labels, mask = _hand_example()
    loss = penalty_loss(logits, labels, mask, suppression="filter")
    assert loss.item() == pytest.approx(math.log(2) / 2)  # (ln 2 + 0 · ln 4) / N, N = 2 label tokens
    loss.backward()
    assert torch.equal(logits.grad[0, 1], torch.zeros(2))  # position 1 predicts the masked token: no gradient at all
    assert logits.grad[0, 0].abs().sum() > 0  # the ordinary token still trains
    terms = penalty_terms(logits, labels, mask, 5.0, "filter")  # λ weighs nothing under filter
    assert terms.num_label_tokens.item() == 2 and terms.num_masked.item() == 1
    assert terms.masked_ce_sum.item() == pytest.approx(math.log(4))  # still measured for the training log


def test_penalty_is_unchanged_bit_for_bit_and_filter_is_its_lambda_zero():
    torch.manual_seed(0)
    logits, labels = torch.randn(3, 9, 11), torch.randint(0, 11, (3, 9))
    labels[1, 6:] = -100
    mask = torch.rand(3, 9) < 0.3
    ce, valid = shifted_token_ce(logits, labels)
    masked = torch.nn.functional.pad(mask[:, 1:], (0, 1), value=False) & valid
    for lam in (0.5, 1.0, 1.5, 2.0):  # Eq. 9 as written before the modes existed: ordinary − λ · masked
        reference = ((valid & ~masked).to(ce.dtype) - float(lam) * masked.to(ce.dtype)) * ce
        assert torch.equal(penalty_terms(logits, labels, mask, lam).loss_sum, reference.sum())
        assert torch.equal(penalty_terms(logits, labels, mask, lam, "penalty").loss_sum, reference.sum())
    assert torch.equal(penalty_terms(logits, labels, mask, 3.0, "filter").loss_sum,
                       penalty_terms(logits, labels, mask, 0.0).loss_sum)


def test_masked_weight_per_mode():
    assert masked_weight("penalty", 1.5) == -1.5 and masked_weight("filter", 1.5) == 0.0
    assert masked_weight("drop", 1.5) == 0.0  # drop leaves no masked token in the data; any left would be filtered
    with pytest.raises(ValueError, match="suppression"):
        masked_weight("mute", 1.0)
    with pytest.raises(ValueError, match="lambda"):
        masked_weight("penalty", -1.0)


# ---- drop: the rows left out ----------------------------------------------------------------------------
def test_drop_removes_every_row_with_a_masked_token_and_nothing_else():
    mask = torch.zeros(6, 5, dtype=torch.bool)
    mask[1, 3] = mask[4, 0] = mask[4, 1] = True
    kept, dropped = rows_without_masked(range(6), mask)
    assert kept == [0, 2, 3, 5] and dropped == [1, 4]
    kept, dropped = rows_without_masked([5, 4, 3, 1], mask)  # a subset (the training split) keeps its order
    assert kept == [5, 3] and dropped == [4, 1]


def test_drop_removes_whole_documents_split_over_rows():
    mask = torch.zeros(6, 4, dtype=torch.bool)
    mask[2, 1] = True  # the second row of document 1
    doc_ids = [0, 1, 1, 1, 2, 3]  # document 1 spans rows 1-3
    kept, dropped = rows_without_masked(range(5), mask, doc_ids)  # row 5 is not a training row
    assert kept == [0, 4] and dropped == [1, 2, 3]
    mask[5, 0] = True  # a masked token in a row outside the training rows: its document has no training row
    assert rows_without_masked(range(5), mask, doc_ids) == ([0, 4], [1, 2, 3])


# ---- identity --------------------------------------------------------------------------------------------
def test_the_default_mode_leaves_checkpoint_ids_unchanged_and_lambda_is_no_identity_of_filter():
    assert "suppression" not in TrainConfig().to_dict()  # checkpoints trained before the modes are found again
    assert TrainConfig(lam=2.0).to_dict()["lam"] == 2.0
    for mode in ("filter", "drop"):
        identity = TrainConfig(suppression=mode).to_dict()
        assert identity["suppression"] == mode and "lam" not in identity
    with pytest.raises(Exception, match="--suppression must be one of penalty, filter, drop"):
        TrainConfig(suppression="mute")


# ---- the CLI on the tiny data ------------------------------------------------------------------------------
def _mask_artifact(ws_root, dataset_id: str, rows: list[int]):
    """A mask artifact marking tokens 10-19 of `rows` (as `ifguide mask` stores one)."""
    from ifguide_cli.core.store.workspace import Workspace

    ws = Workspace(ws_root)
    mask = torch.zeros(3000, 64, dtype=torch.bool)
    mask[rows, 10:20] = True

    def build(ctx):
        save_file({"mask": mask, "ranking": torch.arange(3000)}, str(ctx.staging / "mask.safetensors"))
        return {"masked_tokens": int(mask.sum())}

    art, _ = ws.create("masks", {"test": "drop", "dataset": dataset_id}, [dataset_id], build)
    return art


@pytest.fixture
def base(cli):
    result = cli("--json", "train", "tiny", "--data", "tiny", *MICRO)
    assert result.exit_code == 0, result.stderr
    return result.json


def test_finetune_suppression_drop_leaves_out_the_masked_documents(cli, base, workspace_dir):
    mask = _mask_artifact(workspace_dir, base["config"]["dataset"], list(range(0, 3000, 3)))
    result = cli("--json", "finetune", base["id"], "--data", "tiny", "--mask", mask.id, "--suppression", "drop", *MICRO)
    assert result.exit_code == 0, result.stderr
    art = result.json
    summary, config = art["summary"], art["config"]
    assert summary["suppression"] == "drop" and summary["lambda"] is None and config["lambda"] is None
    assert config["train"]["suppression"] == "drop" and "lam" not in config["train"]
    # the tiny corpus has one document per row and validates on other data: all 1,000 masked rows are left out
    assert summary["dropped_rows"] == 1000 and summary["dropped_documents"] == 1000 and summary["drop_unit"] == "document"
    assert summary["kept_rows"] == 2000 and summary["steps"] == 2
    assert summary["masked_tokens"] == 10_000 and summary["masked_token_nll"] > 0  # probed in the rows left out
    filtered = cli("--json", "finetune", base["id"], "--data", "tiny", "--mask", mask.id, "--suppression", "filter", *MICRO)
    assert filtered.exit_code == 0 and filtered.json["summary"]["suppression"] == "filter"
    assert filtered.json["summary"].get("dropped_rows") is None and filtered.json["id"] != art["id"]
    penalty = cli("--json", "finetune", base["id"], "--data", "tiny", "--mask", mask.id, *MICRO)
    assert penalty.json["summary"]["suppression"] == "penalty" and penalty.json["config"]["lambda"] == 1.0
    assert "suppression" not in penalty.json["config"]["train"]


def test_lambda_with_filter_or_drop_is_one_line(cli):
    for mode in ("filter", "drop"):
        assert_one_line_error(cli("finetune", "x", "--data", "tiny", "--suppression", mode, "--lambda", "2"),
                              f"--lambda applies to --suppression penalty only, not {mode}", code=2)
    assert_one_line_error(cli("train", "tiny", "--data", "tiny", "--suppression", "mute"), "--suppression", "drop", code=2)


def test_a_mode_without_a_mask_is_a_note_and_keeps_the_id(cli, base):
    notes.reset()
    again = cli("--json", "train", "tiny", "--data", "tiny", *MICRO, "--suppression", "drop")
    assert again.exit_code == 0 and again.json["id"] == base["id"] and again.json["reused"]
    said = [n for n in notes.collected() if not n.startswith("this run covers")]  # the 2-step run's coverage note aside
    assert said == ["--suppression drop has no effect without --mask (plain language-model training)"]
