"""`ifguide estimate`: peak GPU memory per stage, and how LoRA, FSDP and gradient checkpointing change it."""

from __future__ import annotations

from ifguide_cli.core.paper import memory
from ifguide_cli.core.paper.plan import arch

GB = 1e9


def test_the_recorded_architectures_have_their_published_sizes():
    assert abs(arch("pythia-2.8b").params - 2.78e9) < 0.05e9
    assert abs(arch("llama-3.1-8b").params - 8.03e9) < 0.05e9


def test_full_fine_tune_terms_follow_the_parameter_count():
    m = memory.MemoryInputs("pythia-2.8b", weight_bytes=2)
    t = memory.training(m)
    p = arch("pythia-2.8b").params
    assert t["weights"] == 2 * p and t["gradients"] == 2 * p and t["optimizer"] == 4 * p  # bf16 weights, AdamW's 2 moments
    assert t["total"] == sum(t[k] for k in ("weights", "gradients", "optimizer", "activations", "other")) + memory.CONTEXT_BYTES


def test_lora_trains_only_the_adapters():
    full = memory.training(memory.MemoryInputs("llama-3.1-8b"))
    lora = memory.training(memory.MemoryInputs("llama-3.1-8b", lora_rank=16))
    adapters = memory.lora_parameters(arch("llama-3.1-8b"), 16)
    assert 0 < adapters < 0.01 * arch("llama-3.1-8b").params
    assert lora["optimizer"] == 2 * 2 * adapters and lora["gradients"] == 2 * adapters
    assert lora["total"] < full["total"] - 40 * GB


def test_fsdp_shards_the_state_but_not_the_activations():
    one = memory.training(memory.MemoryInputs("llama-3.1-8b"))
    eight = memory.training(memory.MemoryInputs("llama-3.1-8b", fsdp=8))
    assert eight["optimizer"] < one["optimizer"] / 4 and eight["activations"] == one["activations"]


def test_gradient_checkpointing_cuts_training_activations_only():
    plain, ckpt = memory.MemoryInputs("pythia-2.8b"), memory.MemoryInputs("pythia-2.8b", checkpointing=True)
    assert memory.training(ckpt)["activations"] < memory.training(plain)["activations"] / 3
    assert memory.factors(ckpt) == memory.factors(plain)  # influence never checkpoints


def test_an_8b_lora_fine_tune_fits_an_80gb_gpu_with_checkpointing_and_a_full_one_does_not():
    lora = memory.training(memory.MemoryInputs("llama-3.1-8b", lora_rank=16, checkpointing=True))
    full = memory.training(memory.MemoryInputs("llama-3.1-8b"))
    assert lora["total"] < 0.9 * 80 * GB < full["total"]


def test_the_estimate_command_prints_every_stage(cli):
    result = cli("--json", "estimate", "pythia-2.8b", "--lora-rank", "16", "--gradient-checkpointing")
    assert result.exit_code == 0, result.stderr
    stages = result.json["stages"]
    assert set(stages) == {"train / finetune", "factors", "scores", "eval toxicity"}
    assert stages["train / finetune"]["fits"] is True
    assert cli("estimate", "gpt-5").exit_code == 2


def test_the_paper_dry_run_gives_peak_memory_per_stage_with_lora(cli):
    full = cli("--json", "run", "--preset", "paper-finetune", "--dry-run").json["memory"]
    lora = cli("--json", "run", "--preset", "paper-finetune", "--dry-run", "--set", "finetune.train.lora_rank=16").json["memory"]
    assert set(full) == {"train / finetune", "factors", "scores", "eval toxicity"}
    assert full["train / finetune"]["weights"] == 2 * arch("pythia-2.8b").params  # bf16 weights, the reference's
    assert lora["train / finetune"]["optimizer"] < full["train / finetune"]["optimizer"] / 100
    assert lora["factors"] == full["factors"]  # LoRA changes the fine-tune, not influence
