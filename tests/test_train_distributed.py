"""Real data parallel: two CPU processes under `accelerate launch` (gloo) run skinvl train.

The launch uses the shipped DDP config (skinvl/accelerate_configs/ddp.yaml) with
`--num_processes 2 --mixed_precision no`: accelerate starts the ranks with torchrun, and on a
machine without an accelerator skinvl train joins them as CPU ranks over gloo. (accelerate 1.x's
`--cpu` launcher starts several processes only through mpirun.) Two processes each build the
model, split the dataset between them (distributed sampler) and all-reduce gradients; the main
process saves checkpoints and the adapter. With 8 rows, 2 per device and 2 processes, one epoch
is 2 optimizer steps; a single process would take 4.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from test_train import write_release

from skinvl.train import ACCELERATE_CONFIG_DIR

REPO_ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_process_cpu_data_parallel_trains_and_checkpoints(tmp_path):
    data = write_release(tmp_path / "release", answers=[f"Answer number {i}." for i in range(4)])
    output = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(ACCELERATE_CONFIG_DIR / "ddp.yaml"),
        "--num_processes", "2", "--mixed_precision", "no", "--main_process_port", str(_free_port()),
        "-m", "skinvl", "train",  # as the README launches it
        "--model", "skinvl-tiny", "--data", str(data), "--data", str(data),
        "--config", "vqa", "--config", "instruct", "--output", str(output),
        "--batch-size", "2", "--epochs", "1", "--lora-r", "8", "--lora-alpha", "16",
        "--logging-steps", "1", "--save-steps", "1", "--report-to", "none",
    ]  # fmt: skip
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(REPO_ROOT),
    }
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=280
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    state = json.loads((output / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2 and state["max_steps"] == 2  # 8 rows / (2 per device x 2)
    assert (output / "checkpoint-2" / "adapter_model.safetensors").is_file()
    assert (output / "checkpoint-2" / "optimizer.pt").is_file()
    assert (output / "adapter_model.safetensors").is_file()
