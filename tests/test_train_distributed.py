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

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from test_train import write_release

from skinvl.train import ACCELERATE_CONFIG_DIR
from skinvl.training_record import SETTINGS_FILE

REPO_ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch(config: str, data: Path, output: Path, *extra: str) -> None:
    """`accelerate launch` a shipped config with 2 CPU processes running skinvl train."""
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(ACCELERATE_CONFIG_DIR / f"{config}.yaml"),
        "--num_processes", "2", "--mixed_precision", "no", "--main_process_port", str(_free_port()),
        "-m", "skinvl", "train",  # as the README launches it
        "--model", "skinvl-tiny", "--data", str(data), "--output", str(output),
        "--lora-r", "8", "--lora-alpha", "16", "--report-to", "none", *extra,
    ]  # fmt: skip
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(REPO_ROOT),
    }
    done = subprocess.run(
        command, cwd=output.parent, env=env, capture_output=True, text=True, timeout=500
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]


def test_two_process_cpu_data_parallel_trains_and_checkpoints(tmp_path):
    data = write_release(tmp_path / "release", answers=[f"Answer number {i}." for i in range(4)])
    output = tmp_path / "ddp"
    _launch("ddp", data, output, "--data", str(data), "--config", "vqa", "--config", "instruct",
            "--batch-size", "2", "--epochs", "1", "--logging-steps", "1", "--save-steps", "1")  # fmt: skip
    state = json.loads((output / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2 and state["max_steps"] == 2  # 8 rows / (2 per device x 2)
    assert (output / "checkpoint-2" / "adapter_model.safetensors").is_file()
    assert (output / "checkpoint-2" / "optimizer.pt").is_file()
    assert (output / "adapter_model.safetensors").is_file()
    settings = json.loads((output / SETTINGS_FILE).read_text())  # what ran, not what was asked
    assert settings["distributed_backend"] == "MULTI_CPU" and settings["num_processes"] == 2
    assert settings["mixed_precision"] == "no" and settings["device"] == "cpu"
    assert settings["effective_batch_size"] == 4


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="deepspeed not installed")
def test_deepspeed_zero3_trains_the_tiny_preset_on_two_cpu_processes(tmp_path):
    """ZeRO-3 partitions the preset's weights as it builds them (2 ranks: each holds half), trains,
    gathers the adapter on save and merges; the record says DeepSpeed stage 3 ran."""
    data = write_release(tmp_path / "release")
    output = tmp_path / "zero3"
    _launch("deepspeed_zero3", data, output, "--config", "vqa", "--batch-size", "2",
            "--max-steps", "2", "--merge")  # fmt: skip
    settings = json.loads((output / SETTINGS_FILE).read_text())
    assert settings["distributed_backend"] == "DEEPSPEED" and settings["deepspeed_zero_stage"] == 3
    assert settings["num_processes"] == 2 and settings["global_step"] == 2
    assert (output / "adapter_model.safetensors").is_file()
    assert (output / "merged" / "model.safetensors").is_file()
