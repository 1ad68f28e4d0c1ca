"""`--fsdp`: the HF Trainer's FSDP under torchrun, on CPU with the gloo backend (where torch supports it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from conftest import invoke_cli

ARGS = ["train", "tiny", "--data", "tiny", "--max-steps", "3", "--batch-size", "8", "--logging-steps", "1",
        "--save-steps", "3", "--eval-docs", "8", "--micro-batch-size", "2"]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun not on PATH")
def test_two_process_fsdp_on_gloo_trains_the_same_checkpoint_as_one_process(tmp_path):
    single = invoke_cli(tmp_path / "single", "--json", *ARGS)
    assert single.exit_code == 0, single.stderr
    cmd = ["torchrun", "--nproc-per-node", "2", "--master-port", "29573", "-m", "ifguide_cli",
           "--workspace", str(tmp_path / "fsdp"), "--json", *ARGS, "--fsdp", "full_shard auto_wrap"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("IFGUIDE_HOME", None)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if out.returncode != 0 and "FSDP" in out.stderr and "cpu" in out.stderr.lower():
        pytest.skip(f"this torch cannot run FSDP on CPU: {out.stderr.strip().splitlines()[-1]}")
    assert out.returncode == 0, out.stderr[-3000:]
    fsdp = json.loads(out.stdout)
    assert fsdp["summary"]["sharding"] == "fsdp" and fsdp["summary"]["world_size"] == 2  # accelerate sharded it
    assert fsdp["id"] == single.json["id"]  # the process layout does not change what is trained
    assert fsdp["summary"]["final_loss"] == pytest.approx(single.json["summary"]["final_loss"], rel=1e-4)
