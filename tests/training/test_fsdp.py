"""`--fsdp`: the HF Trainer's FSDP under torchrun on CUDA GPUs; refused in one line where it would not shard."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
import torch
from clikit import assert_one_line_error, invoke_cli

ARGS = ["train", "tiny", "--data", "tiny", "--max-steps", "3", "--batch-size", "8", "--logging-steps", "1",
        "--save-steps", "3", "--eval-docs", "8", "--micro-batch-size", "2"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_fsdp_without_a_gpu_is_refused_before_any_work(cli, workspace_dir):
    assert_one_line_error(cli(*ARGS, "--fsdp", "full_shard auto_wrap"), "--fsdp needs CUDA GPUs", code=2)
    assert not (workspace_dir / "datasets").exists()  # nothing was tokenized


@pytest.mark.gpu
@pytest.mark.skipif(shutil.which("torchrun") is None or torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs")
def test_two_gpu_fsdp_trains_the_same_checkpoint_as_one_process(tmp_path):
    single = invoke_cli(tmp_path / "single", "--json", *ARGS)
    assert single.exit_code == 0, single.stderr
    cmd = ["torchrun", "--nproc-per-node", "2", "--master-port", "29573", "-m", "ifguide_cli",
           "--workspace", str(tmp_path / "fsdp"), "--json", *ARGS, "--fsdp", "full_shard auto_wrap"]
    out = subprocess.run(cmd, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    fsdp = json.loads(out.stdout)
    assert fsdp["summary"]["sharding"] == "fsdp" and fsdp["summary"]["world_size"] == 2  # accelerate sharded it
    assert fsdp["id"] == single.json["id"]  # the process layout does not change what is trained
    assert fsdp["summary"]["final_loss"] == pytest.approx(single.json["summary"]["final_loss"], rel=1e-3)
