"""Resumes that would mix runs (issue 20, items 3, 4, 5, 15): another model, decoding or dataset, stale
references kept in the log, two runs into one folder, and log records of the wrong type."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from eval_servers import FaultServer

from mm_skin.cli import ExitCode
from skinvl.cli import main
from skinvl.evaluation.runs import IDENTITY, LOCK_FILE

REPO = Path(__file__).resolve().parents[1]


def _args(url: str, data, out, *extra: str, model: str = "served-a") -> list[str]:
    return ["eval", "vqa", "--endpoint", url, "--model-name", model, "--data", str(data), "--out", str(out),
            "--no-bertscore", "--protocol", "standard", "--max-new-tokens", "7", "--limit", "3", *extra]


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]


def _error(capsys) -> str:
    lines = [line[line.index("error:"):] for line in capsys.readouterr().err.split("\n") if "error:" in line]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize(("change", "field"), [
    ({"model": "served-b"}, "model.model_name"),
    ({"extra": ("--decoding", "paper")}, "decoding.name"),
    ({"extra": ("--config", "vqa", "--split", "train")}, "dataset.split"),
])
def test_resume_under_another_identity_is_refused_naming_the_field(vqa_folder, tmp_path, capsys, change, field):
    out = tmp_path / "out"
    with FaultServer() as server:
        assert main(_args(server.url, vqa_folder, out)) == ExitCode.OK
        before = (out / "predictions.jsonl").read_bytes()
        capsys.readouterr()
        args = _args(server.url, vqa_folder, out, "--resume", *change.get("extra", ()), model=change.get("model", "served-a"))
        assert main(args) == ExitCode.BAD_INPUT
    line = _error(capsys)
    assert f"--resume with another {field}" in line and "evaluate into a new --out" in line
    assert (out / "predictions.jsonl").read_bytes() == before  # nothing mixed in


def test_log_without_identity_is_not_resumed(vqa_folder, tmp_path, capsys):
    out = tmp_path / "out"
    with FaultServer() as server:
        assert main(_args(server.url, vqa_folder, out)) == ExitCode.OK
        (out / IDENTITY).unlink()  # a log of an older version, or copied without its identity
        capsys.readouterr()
        assert main(_args(server.url, vqa_folder, out, "--resume")) == ExitCode.BAD_INPUT
    assert f"{IDENTITY}: missing or unreadable" in _error(capsys)


def test_same_identity_resumes(vqa_folder, tmp_path):
    out = tmp_path / "out"
    with FaultServer() as server:
        assert main(_args(server.url, vqa_folder, out)) == ExitCode.OK
        assert main(_args(server.url, vqa_folder, out, "--resume", "--limit", "4")) == ExitCode.OK  # a longer limit
        assert sum(len(v) for v in server.seen.values()) == 4  # the fourth row only was asked again
    assert len(_records(out)) == 4


def test_references_come_from_the_dataset_not_the_log(vqa_folder, tmp_path):
    out = tmp_path / "out"
    with FaultServer() as server:
        assert main(_args(server.url, vqa_folder, out)) == ExitCode.OK
        truth = [r["answer"] for r in _records(out)]
        # The log of a run made before the references were corrected: it kept the old ones.
        stale = [{**r, "answer": "stale reference"} for r in _records(out)]
        (out / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in stale), encoding="utf-8")
        assert main(_args(server.url, vqa_folder, out, "--resume")) == ExitCode.OK
    assert [r["answer"] for r in _records(out)] == truth
    scored = (out / "predictions.csv").read_text(encoding="utf-8")
    assert "stale reference" not in scored and all(answer in scored for answer in truth)


def test_second_run_into_a_locked_folder_refuses_at_once(vqa_folder, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from skinvl.evaluation.runs import folder_lock\n"
         f"with folder_lock(Path({str(out)!r})):\n    print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert holder.stdout.readline().strip() == "held"
        with FaultServer() as server:
            start = time.monotonic()
            assert main(_args(server.url, vqa_folder, out)) == ExitCode.BAD_INPUT
            assert time.monotonic() - start < 10 and not server.seen  # refused before asking anything
    finally:
        holder.kill()
        holder.wait()
    assert f"another run (process {holder.pid}) is writing to this folder" in _error(capsys)
    assert not (out / "predictions.jsonl").exists()
    with FaultServer() as server:  # the holder is gone: the folder is free again
        assert main(_args(server.url, vqa_folder, out)) == ExitCode.OK
    assert oct((out / LOCK_FILE).stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize(("record", "problem"), [
    ({"prediction": None}, "'prediction' of an answered row must be a string, got NoneType"),
    ({"prediction": 42}, "'prediction' of an answered row must be a string, got int"),
    ({"question": None}, "'question' must be a string, got NoneType"),
    ({"status": "done"}, "'status' must be 'ok' or 'failed', got 'done'"),
    ({"id": 7}, "not a prediction record (no string 'id')"),
])
def test_resume_log_records_are_type_checked(vqa_folder, tmp_path, capsys, record, problem):
    out = tmp_path / "out"
    with FaultServer() as server:
        assert main(_args(server.url, vqa_folder, out)) == ExitCode.OK
        records = _records(out)
        records[1].update(record)
        (out / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        capsys.readouterr()
        assert main(_args(server.url, vqa_folder, out, "--resume")) == ExitCode.BAD_INPUT
    line = _error(capsys)
    assert f"{out / 'predictions.jsonl'}, line 2: {problem}" in line and "Traceback" not in line
