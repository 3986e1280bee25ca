"""A hostile OpenAI-compatible server (issue 20, items 1, 2, 8, 9, 21): a key it echoes never leaves
the client, a flood or a trickle of bytes fails the question within the caps, and escape codes
in its error bodies never reach the terminal."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mm_skin.cli import ExitCode
from skinvl.cli import main
from skinvl.evaluation.endpoint import (
    MAX_REASON_CHARS,
    MAX_RESPONSE_BYTES,
    EndpointAnswerer,
    EndpointOptions,
)

SECRET = "sk-live-9f8e7d6c5b4a39281706"  # not an hf_ token: only the client knows it is secret
ESCAPES = "\x1b[2J\x1b]0;owned\x07\x1b]52;c;ZWNobyBwd25lZA==\x07\x9b31m"


class HostileServer:
    """``POST /v1/chat/completions`` answered by ``reply(handler)``; ``with`` starts and stops it."""

    def __init__(self, reply: Callable[[BaseHTTPRequestHandler], None]):
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                self.rfile.read(int(self.headers["Content-Length"]))
                try:
                    reply(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client stopped reading: what the caps are for

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> HostileServer:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _send(handler: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str = "text/plain") -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def _chunked(handler: BaseHTTPRequestHandler, chunks, pause: float = 0.0) -> None:
    """Send ``chunks`` as a chunked 200 body (no Content-Length: the size is unknown up front)."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    for chunk in chunks:
        handler.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        handler.wfile.flush()
        time.sleep(pause)
    handler.wfile.write(b"0\r\n\r\n")


def _client(url: str, monkeypatch, **options) -> EndpointAnswerer:
    monkeypatch.setenv("HOSTILE_KEY", SECRET)
    settings = dict(endpoint=url, model_name="m", api_key_env="HOSTILE_KEY", max_retries=0, retry_backoff=0.01)
    return EndpointAnswerer(EndpointOptions(**{**settings, **options}), {"max_tokens": 8})


def _body() -> dict:
    return {"model": "m", "messages": [{"role": "user", "content": "q"}]}


def _leaks(text: str) -> bool:
    """True when any 8-character piece of the key is in ``text``."""
    return any(SECRET[i:i + 8] in text for i in range(len(SECRET) - 7))


# ------------------------------------------------------------------------------ secrets (items 1, 2)


def test_non_json_200_quoting_the_key_leaks_it_nowhere(vqa_folder, tmp_path, monkeypatch, capsys):
    def reply(handler):  # a proxy's HTML error page that dumps the request headers
        _send(handler, 200, f"<html>debug: Authorization: {handler.headers['Authorization']}</html>".encode())

    out = tmp_path / "out"
    monkeypatch.setenv("HOSTILE_KEY", SECRET)
    with HostileServer(reply) as server:
        code = main(["eval", "vqa", "--endpoint", server.url, "--model-name", "m", "--data", str(vqa_folder),
                     "--out", str(out), "--api-key-env", "HOSTILE_KEY", "--max-retries", "0", "--no-bertscore",
                     "--protocol", "standard", "--limit", "2"])
    err = capsys.readouterr().err
    assert code == ExitCode.BAD_INPUT  # every question failed: one line, the records are kept
    log = (out / "predictions.jsonl").read_text(encoding="utf-8")
    assert "malformed response" in log and "malformed response" in err
    assert not _leaks(log) and not _leaks(err) and "***" in log


@pytest.mark.parametrize("cut", [3, 12])
def test_key_straddling_the_cut_or_cut_short_by_the_server_is_scrubbed(monkeypatch, cut):
    # The key starts just before the reason is cut, so cutting before scrubbing would keep most of it;
    # a server that echoes only the first ``cut`` characters short of the key must not leak them either.
    prefix = "x" * (MAX_REASON_CHARS - len("HTTP 400: ") - 10)

    def reply(handler):
        _send(handler, 400, f"{prefix}{SECRET} / echoed again: {SECRET[:-cut]}".encode())

    with HostileServer(reply) as server:
        client = _client(server.url, monkeypatch)
        answer, reason = client.post(_body())
    assert answer is None and reason.startswith("HTTP 400: xxx") and len(reason) <= MAX_REASON_CHARS
    assert not _leaks(reason)


def test_key_in_an_answer_is_scrubbed(monkeypatch):
    def reply(handler):
        content = f"Your header was {handler.headers['Authorization']}.\nNext line."
        _send(handler, 200, json.dumps({"choices": [{"message": {"content": content}}]}).encode(), "application/json")

    with HostileServer(reply) as server:
        answer, reason = _client(server.url, monkeypatch).post(_body())
    assert reason is None and answer == "Your header was Bearer ***.\nNext line."  # line breaks kept


# ------------------------------------------------------------------------------ caps (items 8, 9)


def test_endless_body_stops_at_the_size_cap(monkeypatch):
    sent = []

    def reply(handler):
        block = b" " * (1 << 20)

        def blocks():
            for _ in range(MAX_RESPONSE_BYTES // len(block) * 100):  # a 1 GB body unless the client stops
                sent.append(len(block))
                yield block

        _chunked(handler, blocks())

    with HostileServer(reply) as server:
        answer, reason = _client(server.url, monkeypatch, timeout=30).post(_body())
    assert answer is None and f"cap of {MAX_RESPONSE_BYTES} bytes" in reason
    assert sum(sent) < 3 * MAX_RESPONSE_BYTES  # the client hung up soon after the cap


def test_declared_oversized_body_is_refused_before_reading(monkeypatch):
    def reply(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", str(2 * 1024**3))
        handler.end_headers()
        handler.wfile.write(b"{")

    with HostileServer(reply) as server:
        answer, reason = _client(server.url, monkeypatch).post(_body())
    assert answer is None and "response of 2147483648 bytes refused" in reason


def test_trickling_body_fails_at_the_whole_request_deadline(monkeypatch):
    def reply(handler):  # one byte every 0.2 s: each read is quick, the whole answer endless
        _chunked(handler, (b" " for _ in range(200)), pause=0.2)

    with HostileServer(reply) as server:
        client = _client(server.url, monkeypatch, timeout=1.0)
        start = time.monotonic()
        answer, reason = client.post(_body())
        took = time.monotonic() - start
    assert answer is None and "DeadlineExceeded" in reason and "--timeout 1 s" in reason
    assert took < 2.0  # not 40 s of trickle


# ------------------------------------------------------------------------------ terminal (item 21)


def test_escape_codes_in_an_error_body_reach_neither_stderr_nor_the_log(vqa_folder, tmp_path, monkeypatch, capsys):
    def reply(handler):
        _send(handler, 403, f"denied{ESCAPES}\r\nX-Injected: 1".encode())

    out = tmp_path / "out"
    with HostileServer(reply) as server:
        code = main(["eval", "vqa", "--endpoint", server.url, "--model-name", "m", "--data", str(vqa_folder),
                     "--out", str(out), "--max-retries", "0", "--no-bertscore", "--protocol", "standard",
                     "--limit", "1"])
    err = capsys.readouterr().err
    [line] = [line[line.index("error:"):] for line in err.split("\n") if "error:" in line]  # tqdm's \r aside
    assert code == ExitCode.BAD_INPUT and "HTTP 403: denied" in line
    record = json.loads((out / "predictions.jsonl").read_text(encoding="utf-8"))
    for text in (line, record["error"]):
        assert not any(ch in text for ch in "\x1b\x07\x9b\r") and "owned" not in text
