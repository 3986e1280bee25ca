"""Runs that survive and scale: a local-model run killed with SIGKILL then resumed, and the same
command under ``accelerate launch --num_processes 2`` (two CPU ranks over gloo) merging one
predictions file identical to the single-process run."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from skinvl.cli import main

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def _args(data, out, *extra: str) -> list[str]:
    return ["eval", "vqa", "--model", "skinvl-tiny", "--data", str(data), "--out", str(out), "--no-bertscore",
            "--protocol", "standard", *extra]


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.is_file() else []


@pytest.mark.slow
def test_local_run_killed_and_resumed_equals_uninterrupted(vqa_folder, tmp_path):
    slow = ("--batch-size", "1", "--max-new-tokens", "48")
    assert main(_args(vqa_folder, tmp_path / "whole", *slow)) == 0
    out = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "skinvl", *_args(vqa_folder, out, *slow)], env=ENV,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not _lines(out / "predictions.jsonl") and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = _lines(out / "predictions.jsonl")
    assert 1 <= len(done) < 12, f"killed after {len(done)} of 12 answers"
    assert main(_args(vqa_folder, out, *slow, "--resume")) == 0
    assert (out / "predictions.jsonl").read_text().splitlines()[: len(done)] == done  # kept, not asked again
    for name in ("predictions.jsonl", "predictions.csv", "predictions_raw.csv"):
        assert (out / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name


def test_resume_refuses_a_log_of_other_rows(vqa_folder, tmp_path, capsys):
    out = tmp_path / "old"
    assert main(_args(vqa_folder, out, "--limit", "1", "--max-new-tokens", "2")) == 0
    # A log written with the row ids of an older version ({split}-{index}): resuming would drop it.
    (out / "predictions.jsonl").write_text(json.dumps({"id": "test-00000", "question": "q", "prediction": "a",
                                                       "status": "ok"}) + "\n")
    capsys.readouterr()
    assert main(_args(vqa_folder, out, "--resume", "--max-new-tokens", "2")) == 2
    assert "none of its rows" in capsys.readouterr().err
    assert json.loads((out / "predictions.jsonl").read_text())["id"] == "test-00000"  # left as it was


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_process_cpu_data_parallel_matches_single_process(vqa_folder, tmp_path):
    options = ("--batch-size", "2", "--max-new-tokens", "6")
    assert main(_args(vqa_folder, tmp_path / "single", *options)) == 0
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(REPO / "skinvl" / "accelerate_configs" / "ddp.yaml"),
        "--num_processes", "2", "--mixed_precision", "no", "--main_process_port", str(_free_port()),
        "-m", "skinvl", *_args(vqa_folder, tmp_path / "ddp", *options),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    assert (ddp / "predictions.jsonl").read_bytes() == (single / "predictions.jsonl").read_bytes()
    assert not list(ddp.glob("predictions.rank*.jsonl"))  # merged by rank 0, parts removed
    assert json.loads((ddp / "results.json").read_text())["metrics"] == json.loads(
        (single / "results.json").read_text())["metrics"]
    assert done.stdout.count("wrote ") == 1  # only rank 0 reports


def test_hostile_and_broken_inputs_are_one_line_errors(tmp_path):
    import pytest

    from skinvl.evaluation.labels import LabelFileError, read_label_csv, resolve_images
    from skinvl.evaluation.predictions import PredictionsFileError, read_predictions
    from skinvl.evaluation.runs import PredictionLog, RunError

    images = tmp_path / "images"
    images.mkdir()
    (tmp_path / "secret.png").write_bytes(b"not yours")
    (images / "link.png").symlink_to(tmp_path / "secret.png")
    for name in ("../secret.png", "link.png"):
        labels = tmp_path / "labels.csv"
        labels.write_text(f"image,categories\n{name},['Nevus']\n")
        with pytest.raises(LabelFileError, match="row 1: image path .* leads outside"):
            resolve_images(read_label_csv(labels), images)

    failed = tmp_path / "predictions.jsonl"
    failed.write_text('{"id": "a", "question": "Q?", "answer": "A.", "prediction": null, "status": "failed", '
                      '"error": "HTTP 500: boom"}\n')
    with pytest.raises(PredictionsFileError, match=r"line 1: this question failed \(HTTP 500: boom\).*--resume"):
        read_predictions(failed)

    log = PredictionLog(tmp_path / "run")
    log.start(resume=False)
    log.append([{"id": "x", "question": "Q", "prediction": "A", "status": "ok"}])
    with log.path.open("a") as f:
        f.write('not json\n{"id": "y"')
    with pytest.raises(RunError, match=r"predictions.jsonl, line 2: not valid JSON"):
        log.read()


def test_generate_command_on_another_family(tmp_path, capsys):
    from eval_families import build_llava
    from PIL import Image

    folder = build_llava(tmp_path / "llava")
    paths = []
    for i, size in enumerate([(40, 24), (20, 44)]):
        paths.append(tmp_path / f"{i}.png")
        Image.new("RGB", size, (40 * i, 90, 200)).save(paths[-1])
    capsys.readouterr()
    assert main(["generate", "--model", str(folder), "--image", str(paths[0]), "--image", str(paths[1]),
                 "--question", "What is it?", "--max-new-tokens", "4"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line for line in out if line.startswith("[")] == [f"[{p}] Q: What is it?" for p in paths]
    assert main(["generate", "--model", str(folder), "--image", str(tmp_path / "absent.png"), "--question", "Q"]) == 2
    assert capsys.readouterr().err.strip() == f"error: image {tmp_path / 'absent.png'} does not exist or is not a regular file; check the path."
