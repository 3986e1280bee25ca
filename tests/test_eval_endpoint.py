"""``skinvl eval vqa --endpoint``: a loopback server injecting 429 / 500 / timeouts / dropped
connections, original image bytes, the API key, failures recorded (not scored), and a run killed
with SIGKILL then resumed without asking an answered question again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from eval_servers import FaultServer, image_tag

from skinvl.cli import main

REPO = Path(__file__).resolve().parents[1]
SECRET = "sk-test-0123456789abcdef"


def _rows(data) -> list[tuple[str, bytes]]:
    """(question, original image bytes) of every row of the sample's VQA test split."""
    import datasets

    from skinvl.evaluation.vqa import load_vqa_split

    ds = load_vqa_split(str(data)).cast_column("image", datasets.Image(decode=False))
    return [(row["question"], row["image"]["bytes"]) for row in ds]


def _args(url: str, data, out, *extra: str) -> list[str]:
    return ["eval", "vqa", "--endpoint", url, "--model-name", "tiny-served", "--data", str(data), "--out", str(out),
            "--no-bertscore", "--protocol", "standard", "--max-new-tokens", "7", "--retry-backoff", "0.01", *extra]


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.is_file() else []


def test_faults_are_retried_and_final_failures_recorded(vqa_folder, tmp_path, monkeypatch, capsys):
    rows = _rows(vqa_folder)
    questions = [q for q, _ in rows]
    unique = [q for q in dict.fromkeys(questions) if questions.count(q) == 1]
    assert len(unique) >= 5, "the sample needs five questions asked once"
    script = {unique[0]: ["429", "429"], unique[1]: ["500"], unique[2]: ["slow"], unique[3]: ["drop"],
              unique[4]: ["fail"]}
    monkeypatch.setenv("EVAL_TEST_KEY", SECRET)
    out = tmp_path / "out"
    with FaultServer(script, slow_s=1.5) as server:
        rc = main(_args(server.url, vqa_folder, out, "--api-key-env", "EVAL_TEST_KEY", "--timeout", "0.5",
                        "--max-retries", "3", "--concurrency", "4"))
    assert rc == 0
    records = [json.loads(line) for line in _lines(out / "predictions.jsonl")]
    assert [r["question"] for r in records] == questions  # row order, whatever the completion order
    for record, (question, data) in zip(records, rows, strict=True):
        if question == unique[4]:
            assert record["status"] == "failed" and record["prediction"] is None
            assert "HTTP 500" in record["error"] and "after 3 retries" in record["error"]
        else:  # answered about the ORIGINAL image bytes
            assert record["status"] == "ok" and record["prediction"] == f"echo {question} #{image_tag(data)}"
    assert [server.attempts[q] for q in unique[:5]] == [3, 2, 2, 2, 4]
    body = server.seen[unique[0]][0]
    assert body["model"] == "tiny-served" and body["temperature"] == 0.0 and body["max_tokens"] == 7
    assert server.auth == {f"Bearer {SECRET}"}

    doc = json.loads((out / "results.json").read_text())
    assert doc["failed"]["count"] == 1 and doc["failed"]["rows"][0]["error"].startswith("HTTP 500")
    assert doc["n_samples"] == len(rows) - 1  # the failed question is not scored as an empty answer
    assert doc["model_info"] == {"model_name": "tiny-served", "endpoint": server.url}
    captured = capsys.readouterr()
    assert "1 question(s) failed" in captured.err
    for text in (captured.out, captured.err, *(p.read_text() for p in out.iterdir() if p.suffix in (".json", ".jsonl", ".csv", ".md"))):
        assert SECRET not in text


def test_retry_after_header_forms():
    from email.utils import formatdate

    from skinvl.evaluation.endpoint import _retry_after, chat_url

    assert _retry_after("3", 0.5) == 3.0 and _retry_after(None, 0.5) == 0.5 and _retry_after("soon", 0.5) == 0.5
    assert 8 < _retry_after(formatdate(time.time() + 10, usegmt=True), 0.5) <= 10
    assert chat_url("http://h:1") == chat_url("http://h:1/v1/") == "http://h:1/v1/chat/completions"


@pytest.mark.slow
def test_killed_run_resumes_without_asking_again(vqa_folder, tmp_path):
    rows = _rows(vqa_folder)
    with FaultServer() as server:
        assert main(_args(server.url, vqa_folder, tmp_path / "whole", "--concurrency", "3")) == 0

    gate, out = threading.Event(), tmp_path / "killed"
    with FaultServer(gate=gate, open_answers=4) as server:
        command = [sys.executable, "-m", "skinvl", *_args(server.url, vqa_folder, out, "--concurrency", "1")]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        # Kill once 4 answers are logged AND the 5th request has reached the server (held by the gate):
        # killed earlier, under load, the 5th request is cut mid-send and never counted.
        while ((len(_lines(out / "predictions.jsonl")) < 4 or sum(len(v) for v in server.seen.values()) < 5)
               and time.monotonic() < deadline and process.poll() is None):
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert len(_lines(out / "predictions.jsonl")) == 4, "the run should hang on the 5th answer"
        with (out / "predictions.jsonl").open("a") as f:
            f.write('{"id": "test-00004", "pred')  # a line torn by the kill
        asked_before = sum(len(v) for v in server.seen.values())
        gate.set()
        assert main(_args(server.url, vqa_folder, out)) == 2  # no --resume: the old log is not overwritten
        assert main(_args(server.url, vqa_folder, out, "--resume")) == 0
    assert asked_before == 5 and sum(len(v) for v in server.seen.values()) == 5 + len(rows) - 4
    assert (out / "predictions.jsonl").read_bytes() == (tmp_path / "whole" / "predictions.jsonl").read_bytes()
    assert (out / "predictions.csv").read_bytes() == (tmp_path / "whole" / "predictions.csv").read_bytes()
    resumed, whole = (json.loads((p / "results.json").read_text()) for p in (out, tmp_path / "whole"))
    assert resumed["metrics"] == whole["metrics"] and resumed["resumed"] is True
    assert resumed["dataset_info"]["row_ids_blake2b"] == whole["dataset_info"]["row_ids_blake2b"]


@pytest.mark.parametrize("bad", ["--concurrency=0", "--model=skinvl-tiny"])
def test_endpoint_option_errors_are_one_line(bad, vqa_folder, tmp_path, capsys):
    assert main(_args("http://127.0.0.1:9", vqa_folder, tmp_path / "o", bad)) == 2
    assert capsys.readouterr().err.strip().startswith("error:")


def test_zeroshot_through_an_endpoint(tmp_path):
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    lines = ["image,categories"]
    for i, label in enumerate(["Melanoma", "Nevus", "Nevus"]):
        Image.new("RGB", (20 + i, 30), (30 * i, 60, 90)).save(images / f"{i}.png")
        lines.append(f"{i}.png,['{label}']")
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    with FaultServer() as server:
        assert main(["eval", "zeroshot", "--endpoint", f"{server.url}/v1", "--model-name", "m", "--labels",
                     str(tmp_path / "labels.csv"), "--images", str(images), "--out", str(tmp_path / "out")]) == 0
    records = [json.loads(line) for line in _lines(tmp_path / "out" / "predictions.jsonl")]
    assert [r["id"] for r in records] == ["0.png", "1.png", "2.png"]
    question = records[0]["question"]
    assert question.startswith("This is a skin lesion image. From the following categories: Melanoma, Nevus")
    tags = [image_tag((images / f"{i}.png").read_bytes()) for i in range(3)]
    assert [r["prediction"] for r in records] == [f"echo {question} #{tag}" for tag in tags]
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    # "echo ... Melanoma, Nevus ..." names both classes: ambiguous, parsed to the first mentioned.
    assert doc["metrics"]["n"] == 3 and doc["metrics"]["ambiguous"] == 3
    assert server.seen[question][0]["max_tokens"] == 64


def test_unreachable_server_fails_every_question_with_the_reason(vqa_folder, tmp_path, capsys):
    out = tmp_path / "down"
    assert main(_args("http://127.0.0.1:9", vqa_folder, out, "--limit", "2", "--max-retries", "1")) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: every question failed (first: ConnectError") and "--resume" in last
    records = [json.loads(line) for line in _lines(out / "predictions.jsonl")]
    assert [r["status"] for r in records] == ["failed", "failed"]
    assert all(r["prediction"] is None and "after 1 retries" in r["error"] for r in records)
