"""Served models: any OpenAI-compatible ``/v1/chat/completions`` server (vLLM, SGLang, TGI,
``transformers serve``, a hosted API) answers the questions, ``--concurrency`` requests in flight.

Each request is one user turn [image, question]; the image is a base64 ``image_url`` data URL of
the dataset's ORIGINAL bytes (no re-encoding). Decoding maps to ``temperature`` / ``top_p`` /
``max_tokens`` (+ ``seed``). 429, 5xx, timeouts and dropped connections are retried with
exponential backoff (``Retry-After`` honoured); a question that still fails is recorded as
failed with the reason, counted, and never scored as an empty answer. A response over
MAX_RESPONSE_BYTES, or one still arriving after ``--timeout`` seconds (a deadline for the whole
request, checked on every chunk received; a silent connection is cut by the same timeout per
read), fails its question. The API key comes from the environment variable named by
``--api-key-env`` and never leaves the client: it is scrubbed from every answer and failure reason.
"""

from __future__ import annotations

import base64
import email.utils
import json
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

from mm_skin.hub import scrub
from mm_skin.untrusted import redact
from skinvl.evaluation.runs import Row
from skinvl.inference.images import LazyImages, mime_type

RETRY_STATUS = frozenset({408, 409, 425, 429}) | frozenset(range(500, 600))
MAX_BACKOFF_S = 60.0
# A chat answer of max_new_tokens is a few KiB; a body over this is a fault (or an attack) that
# would otherwise be read into memory whole.
MAX_RESPONSE_BYTES = 10 * 1024 * 1024
ERROR_BODY_BYTES = 1024  # of an error response, quoted in the reason
MAX_REASON_CHARS = 200  # a failure reason as recorded and printed (cut after scrubbing)


class EndpointError(ValueError):
    """Endpoint options that cannot work; the message names the option and the fix."""


@dataclass(kw_only=True)
class EndpointOptions:
    """A served model instead of a local one."""

    endpoint: str | None = field(default=None, metadata={
        "help": "base URL of an OpenAI-compatible server (http://host:8000 or .../v1); replaces --model"})
    model_name: str | None = field(default=None, metadata={"help": "model name the server knows (with --endpoint)"})
    api_key_env: str = field(default="OPENAI_API_KEY", metadata={
        "help": "environment variable holding the API key (sent as a Bearer token, never printed)"})
    concurrency: int = field(default=8, metadata={"help": "requests in flight"})
    timeout: float = field(default=120.0, metadata={
        "help": "deadline in seconds for a whole request, from sending it to the last byte of the answer"})
    max_retries: int = field(default=5, metadata={"help": "retries of a request on 429 / 5xx / timeouts / lost connections"})
    retry_backoff: float = field(default=1.0, metadata={"help": "first retry delay in seconds, doubled each retry"})


def chat_url(endpoint: str) -> str:
    """``.../v1/chat/completions`` for a base URL given with or without ``/v1``."""
    base = endpoint.rstrip("/")
    if base.endswith("/chat/completions"):
        return base
    return f"{base}/chat/completions" if base.endswith("/v1") else f"{base}/v1/chat/completions"


def sampling_params(generate_kwargs: dict[str, Any], seed: int) -> dict[str, Any]:
    """The request's sampling fields for a decoding (beam search has no API field: not sent)."""
    params: dict[str, Any] = {"max_tokens": generate_kwargs["max_new_tokens"], "seed": seed}
    if generate_kwargs.get("do_sample"):
        params.update(temperature=generate_kwargs["temperature"], top_p=generate_kwargs["top_p"])
    else:
        params["temperature"] = 0.0
    return params


class EndpointAnswerer:
    """Asks an OpenAI-compatible server, ``concurrency`` questions at a time (an ``Answerer``)."""

    def __init__(self, options: EndpointOptions, params: dict[str, Any], *, blind: bool = False):
        import httpx

        self.blind = blind  # blind baseline: requests carry the question only, no image part
        if not options.endpoint or not options.model_name:
            raise EndpointError("--endpoint needs --model-name (the name the server serves the model under).")
        if options.concurrency < 1:
            raise EndpointError(f"--concurrency must be >= 1, got {options.concurrency}.")
        self.options, self.params, self.url = options, params, chat_url(options.endpoint)
        key = os.environ.get(options.api_key_env)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._key = key
        self.client = httpx.Client(
            headers=headers, timeout=options.timeout,
            limits=httpx.Limits(max_connections=options.concurrency, max_keepalive_connections=options.concurrency),
        )

    def payload(self, question: str, image: bytes | None) -> dict[str, Any]:
        """The chat request for one question: one user turn [image (original bytes), text]; no image: text only."""
        content: list[dict[str, Any]] = [{"type": "text", "text": question}]
        if image is not None:
            url = f"data:{mime_type(image)};base64,{base64.b64encode(image).decode('ascii')}"
            content.insert(0, {"type": "image_url", "image_url": {"url": url}})
        return {"model": self.options.model_name, "messages": [{"role": "user", "content": content}], **self.params}

    def answer(self, rows: Sequence[Row], images: LazyImages) -> Iterator[list[dict[str, Any]]]:
        """Yield one record per response, in completion order."""
        with ThreadPoolExecutor(max_workers=self.options.concurrency) as pool:
            futures = [pool.submit(self._ask, row, images, k) for k, row in enumerate(rows)]
            try:
                for future in as_completed(futures):
                    yield [future.result()]
            finally:
                for future in futures:
                    future.cancel()

    def _ask(self, row: Row, images: LazyImages, k: int) -> dict[str, Any]:
        try:
            body = self.payload(row.question, None if self.blind else images.raw(k))
        except (OSError, ValueError) as err:
            return row.record(None, error=f"image: {err}")
        text, error = self.post(body)
        return row.record(text, error=error)

    def post(self, body: dict[str, Any]) -> tuple[str | None, str | None]:
        """(answer, None) or (None, reason) after the retries.

        Every string leaving the client goes through here: the key (or any piece of it a server
        echoed) is scrubbed from the answer and the reason, the reason is made one printable line,
        and only then cut to MAX_REASON_CHARS (cutting first could split the key past the scrub).
        """
        text, reason = self._attempts(body)
        if reason is not None:
            reason = scrub(reason, self._key)
            return None, reason if len(reason) <= MAX_REASON_CHARS else reason[: MAX_REASON_CHARS - 3] + "..."
        return redact(text or "", self._key), None

    def _attempts(self, body: dict[str, Any]) -> tuple[str | None, str | None]:
        # Hand-written on purpose: httpx's HTTPTransport(retries=N) retries only failed connects, at
        # once; here 429 / 5xx answers and read timeouts are retried too, with backoff and Retry-After.
        import httpx

        reason = "not sent"
        for attempt in range(self.options.max_retries + 1):
            delay = self.options.retry_backoff * 2**attempt
            try:
                status, headers, data = self._exchange(body)
            except ResponseTooLarge as err:  # asking again would fetch the same flood
                return None, str(err)
            except (httpx.TransportError, DeadlineExceeded) as err:  # timeouts, refused and dropped connections
                reason = f"{type(err).__name__}: {str(err) or 'no detail'}"
            else:
                if status == 200:
                    return _content(data)
                reason = f"HTTP {status}: {data.decode('utf-8', 'replace')}"
                if status not in RETRY_STATUS:
                    return None, reason
                delay = _retry_after(headers.get("retry-after"), delay)
            if attempt < self.options.max_retries:
                time.sleep(min(delay, MAX_BACKOFF_S))
        return None, f"{reason} (after {self.options.max_retries} retries)"

    def _exchange(self, body: dict[str, Any]) -> tuple[int, Any, bytes]:
        """(status, headers, body) of one request, streamed: at most MAX_RESPONSE_BYTES (decoded),
        and no chunk accepted after ``--timeout`` seconds from the start of the request."""
        deadline = time.monotonic() + self.options.timeout
        with self.client.stream("POST", self.url, json=body) as response:
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > MAX_RESPONSE_BYTES:
                raise ResponseTooLarge(f"response of {int(declared)} bytes refused (cap {MAX_RESPONSE_BYTES} bytes)")
            # Error bodies are only quoted in the reason: their first KiB is enough.
            limit = MAX_RESPONSE_BYTES if response.status_code == 200 else ERROR_BODY_BYTES
            data = bytearray()
            for chunk in response.iter_bytes():
                data += chunk
                if time.monotonic() > deadline:
                    raise DeadlineExceeded(f"no complete response within --timeout {self.options.timeout:g} s")
                if len(data) > limit:
                    if response.status_code != 200:
                        break
                    raise ResponseTooLarge(f"response over the cap of {MAX_RESPONSE_BYTES} bytes; stopped reading")
            return response.status_code, response.headers, bytes(data[:limit])

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()


class ResponseTooLarge(Exception):
    """A response body over MAX_RESPONSE_BYTES: the question is recorded as failed, not retried."""


class DeadlineExceeded(Exception):
    """The whole request took longer than ``--timeout`` (e.g. a body trickling in byte by byte)."""


def _content(data: bytes) -> tuple[str | None, str | None]:
    try:
        text = json.loads(data)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        return None, f"malformed response: {data[:ERROR_BODY_BYTES].decode('utf-8', 'replace')!r}"
    if not isinstance(text, str):
        return None, f"malformed response: content is {type(text).__name__}"
    return text.strip(), None


def _retry_after(value: str | None, default: float) -> float:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date), else ``default``."""
    if not value:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    return max(0.0, when.timestamp() - time.time())


__all__ = ["EndpointAnswerer", "EndpointError", "EndpointOptions", "chat_url", "sampling_params"]
