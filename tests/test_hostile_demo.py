"""The demo under hostile visitors (issue 20, items 10 and 19): a flood of a question, an oversized
upload, uploads left behind world-readable, an unbounded queue. Driven through gradio_client and
plain HTTP against ``skinvl demo`` launched on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("gradio", reason="the demo needs gradio: pip install -e '.[demo]'")

from test_demo import _drawn_image, _free_port, _wait_until_serving  # noqa: E402

from skinvl.demo import CONCURRENCY, MAX_QUESTION_TOKENS, MAX_QUEUE, MAX_UPLOAD_BYTES  # noqa: E402

WAIT_S = 60


class Demo:
    def __init__(self, url: str, temp: Path, process: subprocess.Popen):
        self.url, self.temp, self.process = url, temp, process

    def private_folders(self) -> list[Path]:
        return sorted(self.temp.glob("skinvl-demo-*"))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile-demo")
    temp = root / "gradio-tmp"
    temp.mkdir()
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRADIO_")}
    env.update(HF_HUB_OFFLINE="1", GRADIO_TEMP_DIR=str(temp))
    log = root / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "skinvl", "demo", "--model", "skinvl-tiny", "--port", str(port),
                                    "--max-new-tokens", "4"], cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_until_serving(url, process, log)
        yield Demo(url, temp, process)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


def _client(demo: Demo):
    from gradio_client import Client

    return Client(demo.url, verbose=False)


def test_flooded_question_is_refused_at_once(demo, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    image = handle_file(str(_drawn_image(tmp_path / "a.png")))
    client = _client(demo)
    for question, said in (("x" * 1_000_000, "1,000,000 characters long"),
                           ("lesion " * (MAX_QUESTION_TOKENS + 50), "tokens long")):
        start = time.monotonic()
        with pytest.raises(AppError, match=f"{said}; this demo takes at most {MAX_QUESTION_TOKENS}"):
            client.predict(image=image, question=question, api_name="/answer")
        assert time.monotonic() - start < 20  # refused, not generated
    with pytest.raises(AppError, match="list of class names is"):
        client.predict(image=image, classes="Nevus, " * 2000, protocol="robust", api_name="/zeroshot")
    assert client.predict(image=image, question="What is shown?", api_name="/answer")  # the cap leaves normal use


def test_upload_over_the_cap_is_refused_and_uploads_are_private(demo, tmp_path):
    import httpx

    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG" + b"\0" * (MAX_UPLOAD_BYTES + 1024))
    with big.open("rb") as f:
        response = httpx.post(demo.url + "gradio_api/upload", files={"files": ("big.png", f, "image/png")}, timeout=WAIT_S)
    assert response.status_code == 413, response.text[:300]
    [folder] = demo.private_folders()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700  # other users of the machine cannot list or read
    assert not [p for p in folder.rglob("*") if p.is_file() and p.stat().st_size > MAX_UPLOAD_BYTES]
    small = _drawn_image(tmp_path / "lesion.png")
    response = httpx.post(demo.url + "gradio_api/upload", files={"files": ("lesion.png", small.read_bytes(), "image/png")},
                          timeout=WAIT_S)
    assert response.status_code == 200
    [stored] = response.json()
    assert Path(stored).resolve().is_relative_to(folder.resolve())


def test_queue_is_bounded(tiny):
    from skinvl.demo import DemoOptions, build_app, queued
    from skinvl.inference.loading import LoadedModel

    app = queued(build_app(LoadedModel.wrap(*tiny), DemoOptions(model="skinvl-tiny")))
    assert app._queue.max_size == MAX_QUEUE and app._queue.default_concurrency_limit == CONCURRENCY
    generating = [fn for fn in app.fns.values() if fn.api_name in ("answer", "zeroshot")]
    assert len(generating) == 2 and all(fn.concurrency_limit in ("default", CONCURRENCY) for fn in generating)


def test_everything_goes_on_exit(demo):
    import httpx

    config = httpx.get(demo.url + "config", timeout=WAIT_S).json()
    assert config.get("max_file_size") == MAX_UPLOAD_BYTES
    assert demo.private_folders()
    demo.process.send_signal(signal.SIGTERM)
    assert demo.process.wait(timeout=30) == 0
    assert demo.private_folders() == []  # uploads and example images deleted
