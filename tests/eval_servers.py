"""A loopback OpenAI-compatible chat server that injects faults, for the endpoint client's tests.

``FaultServer(script)`` answers ``POST /v1/chat/completions`` with ``"echo <question> #<blake2b of
the image bytes>"`` so that a test can check the image travelled as the original bytes. Per
question text, ``script`` lists what the successive requests get: ``"429"`` (with
``Retry-After: 0``), ``"500"``, ``"slow"`` (no answer before the client's timeout), ``"drop"``
(the connection is closed without a response) or ``"ok"``; after the list, ``"ok"``. ``"fail"``
as the last entry repeats forever (HTTP 500). ``delay`` adds latency to every request (bench);
``gate`` (a threading.Event) holds every answer after the first ``open_answers`` until set.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def image_tag(data: bytes) -> str:
    """The tag the server appends to an answer for these image bytes."""
    return hashlib.blake2b(data, digest_size=4).hexdigest()


class FaultServer:
    """Start with ``with FaultServer(...) as server:``; ``server.url`` is the base URL."""

    def __init__(self, script: dict[str, list[str]] | None = None, *, delay: float = 0.0, slow_s: float = 2.0,
                 gate: threading.Event | None = None, open_answers: int = 0):
        self.script = {k: list(v) for k, v in (script or {}).items()}
        self.delay, self.slow_s, self.gate, self.open_answers = delay, slow_s, gate, open_answers
        self.attempts: Counter[str] = Counter()
        self.seen: dict[str, list[dict]] = defaultdict(list)  # question -> request bodies
        self.auth: set[str | None] = set()
        self.answered = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server._handle(self, body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def _action(self, question: str) -> str:
        with self._lock:
            steps = self.script.get(question, [])
            n = self.attempts[question]
            self.attempts[question] += 1
        if steps and steps[-1] == "fail" and n >= len(steps) - 1:
            return "500"
        return steps[n] if n < len(steps) else "ok"

    def _handle(self, handler: BaseHTTPRequestHandler, body: dict) -> None:
        content = body["messages"][0]["content"]
        question = next(c["text"] for c in content if c["type"] == "text")
        url = next((c["image_url"]["url"] for c in content if c["type"] == "image_url"), None)  # None: a blind request
        with self._lock:
            self.seen[question].append(body)
            self.auth.add(handler.headers.get("Authorization"))
        time.sleep(self.delay)
        action = self._action(question)
        if action == "drop":
            handler.close_connection = True
            handler.connection.close()
            return
        if action == "slow":
            time.sleep(self.slow_s)
        if action in ("429", "500"):
            self._send(handler, int(action), {"error": {"message": f"injected {action}"}}, {"Retry-After": "0"})
            return
        with self._lock:
            self.answered += 1
            held = self.gate is not None and self.answered > self.open_answers
        if held:
            self.gate.wait()
        tag = image_tag(base64.b64decode(url.split(",", 1)[1])) if url is not None else "no-image"
        answer = f"echo {question} #{tag}"
        self._send(handler, 200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": answer}}]})

    @staticmethod
    def _send(handler, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                handler.send_header(key, value)
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout) first

    def __enter__(self) -> FaultServer:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        if self.gate is not None:
            self.gate.set()
        self.httpd.shutdown()
        self.httpd.server_close()
