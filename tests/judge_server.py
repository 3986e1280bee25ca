"""A loopback OpenAI-compatible judge server that injects faults, for ``skinvl eval judge``'s tests and bench.

The judge's rule is deterministic: a candidate is "correct" when it contains the reference (case and
spaces ignored); with ``max_words`` set, a candidate longer than that is "incorrect" (a judge with a
length bias). Per candidate text, ``faults`` lists what successive requests get: ``"500"`` (HTTP
500), ``"garbage"`` (a reply with no JSON object), ``"wrong"`` (a JSON object breaking the contract) or
``"ok"``; after the list, ``"ok"``; ``"garbage!"`` as the last entry repeats forever. With
``json_mode=False`` a request carrying ``response_format`` gets HTTP 400 naming that field, as servers
without JSON mode answer. Every request's headers and body are kept (``requests``) so a test can
check what was sent; ``delay`` sleeps per request (the bench's 200 ms server).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _field(prompt: str, name: str) -> str:
    match = re.search(rf"^{name}: (.*)$", prompt, flags=re.MULTILINE)
    return match.group(1) if match else ""


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


class JudgeServer:
    """``with JudgeServer(...) as server:``; ``server.url`` is the base URL."""

    def __init__(self, faults: dict[str, list[str]] | None = None, *, json_mode: bool = True,
                 max_words: int | None = None, delay: float = 0.0, axes: bool = False):
        self.faults = {k: list(v) for k, v in (faults or {}).items()}
        self.json_mode, self.max_words, self.delay, self.axes = json_mode, max_words, delay, axes
        self.attempts: Counter[str] = Counter()
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server._lock:
                    server.requests.append({"headers": dict(self.headers), "body": body})
                time.sleep(server.delay)
                status, reply = server._reply(body)
                payload = ({"choices": [{"index": 0, "message": {"role": "assistant", "content": reply}}]}
                           if status == 200 else {"error": {"message": reply}})
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status != 200:
                    self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def _action(self, candidate: str) -> str:
        with self._lock:
            steps, n = self.faults.get(candidate, []), self.attempts[candidate]
            self.attempts[candidate] += 1
        if steps and steps[-1].endswith("!") and n >= len(steps) - 1:
            return steps[-1].rstrip("!")
        return steps[n] if n < len(steps) else "ok"

    def _reply(self, body: dict) -> tuple[int, str]:
        if "response_format" in body and not self.json_mode:
            return 400, "unknown field: response_format"
        prompt = body["messages"][-1]["content"]
        reference, candidate = _field(prompt, "Reference answer"), _field(prompt, "Candidate answer")
        action = self._action(candidate)
        if action == "500":
            return 500, "injected 500"
        if action == "garbage":
            return 200, "I think this answer is mostly fine."
        if action == "wrong":
            return 200, '{"verdict": "maybe", "reason": "unsure"}'
        if self.axes:
            score = 5 if _norm(reference) in _norm(candidate) else 2
            scores = dict.fromkeys(("accuracy", "safety", "medical_groundedness", "clinical_coverage",
                                    "reasoning_coherence", "description_precision"), score)
            return 200, json.dumps({"scores": scores, "reason": "scored"})
        correct = _norm(reference) in _norm(candidate)
        if self.max_words is not None and len(candidate.split()) > self.max_words:
            correct = False
        verdict = "correct" if correct else "incorrect"
        return 200, f'Here is my grade:\n```json\n{{"verdict": "{verdict}", "reason": "compared with the reference"}}\n```'

    def __enter__(self) -> JudgeServer:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
