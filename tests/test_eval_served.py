"""End to end against a real ``transformers serve`` process on 127.0.0.1.

The authors'-format tiny fixture is converted with ``skinvl convert --format llava`` (stock
transformers LLaVA), served with ``transformers serve`` (the ``serving`` extra of transformers),
and evaluated twice: through the endpoint client and in process. The answers must be equal.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_eval_runs import ENV, _free_port

from skinvl.cli import main

COMMON = ("--limit", "6", "--max-new-tokens", "8", "--no-bertscore", "--protocol", "standard")


def _wait_healthy(url: str, process: subprocess.Popen, seconds: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, f"transformers serve exited with {process.returncode}"
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.5)
    raise AssertionError("transformers serve did not become healthy")


@pytest.mark.slow
def test_transformers_serve_answers_equal_in_process_answers(shared_dir, vqa_folder, tmp_path):
    pytest.importorskip("fastapi", reason="needs the serving extra: pip install 'transformers[serving]'")
    fixture = shared_dir / "fixtures" / "skinvl-original-tiny"
    if not fixture.is_dir():
        pytest.skip(f"{fixture} is absent")
    served = tmp_path / "skinvl-llava"
    assert main(["convert", str(fixture), str(served), "--format", "llava"]) == 0
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    command = [str(Path(sys.executable).with_name("transformers")), "serve", str(served), "--host", "127.0.0.1",
               "--port", str(port), "--device", "cpu", "--dtype", "float32"]
    with (tmp_path / "serve.log").open("w") as log:
        process = subprocess.Popen(command, env=ENV, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_healthy(url, process)
            assert main(["eval", "vqa", "--endpoint", url, "--model-name", str(served), "--data", str(vqa_folder),
                         "--out", str(tmp_path / "served"), "--concurrency", "2", *COMMON]) == 0
        finally:
            process.terminate()
            process.wait(timeout=30)
    assert main(["eval", "vqa", "--model", str(served), "--data", str(vqa_folder), "--out",
                 str(tmp_path / "local"), *COMMON]) == 0
    remote, local = ([json.loads(line) for line in (tmp_path / run / "predictions.jsonl").read_text().splitlines()]
                     for run in ("served", "local"))
    assert all(r["status"] == "ok" for r in remote) and len(remote) == 6
    assert [r["prediction"] for r in remote] == [r["prediction"] for r in local]
    assert any(r["prediction"] for r in local)
