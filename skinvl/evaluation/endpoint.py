"""Served models: any OpenAI-compatible ``/v1/chat/completions`` server (vLLM, SGLang, TGI,
``transformers serve``, a hosted API) answers the questions, ``--concurrency`` requests in flight.

Each request is one user turn [image, question]; the image is a base64 ``image_url`` data URL of
the dataset's ORIGINAL bytes (no re-encoding). Decoding maps to ``temperature`` / ``top_p`` /
``max_tokens`` (+ ``seed``). 429, 5xx, timeouts and dropped connections are retried with
exponential backoff (``Retry-After`` honoured); a question that still fails is recorded as
failed with the reason, counted, and never scored as an empty answer. The API key comes from the
environment variable named by ``--api-key-env`` and is never printed.
"""

from __future__ import annotations

import base64
import email.utils
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

from skinvl.evaluation.runs import Row
from skinvl.inference.images import LazyImages, mime_type

RETRY_STATUS = frozenset({408, 409, 425, 429}) | frozenset(range(500, 600))
MAX_BACKOFF_S = 60.0


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
    timeout: float = field(default=120.0, metadata={"help": "seconds per request"})
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

    def __init__(self, options: EndpointOptions, params: dict[str, Any]):
        import httpx

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

    def payload(self, question: str, image: bytes) -> dict[str, Any]:
        """The chat request for one question: one user turn [image (original bytes), text]."""
        url = f"data:{mime_type(image)};base64,{base64.b64encode(image).decode('ascii')}"
        content = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": question}]
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
            body = self.payload(row.question, images.raw(k))
        except (OSError, ValueError) as err:
            return row.record(None, error=f"image: {err}")
        text, error = self.post(body)
        return row.record(text, error=error)

    def post(self, body: dict[str, Any]) -> tuple[str | None, str | None]:
        """(answer, None) or (None, reason) after the retries."""
        # Hand-written on purpose: httpx's HTTPTransport(retries=N) retries only failed connects, at
        # once; here 429 / 5xx answers and read timeouts are retried too, with backoff and Retry-After.
        import httpx

        reason = "not sent"
        for attempt in range(self.options.max_retries + 1):
            delay = self.options.retry_backoff * 2**attempt
            try:
                response = self.client.post(self.url, json=body)
            except httpx.TransportError as err:  # timeouts, refused and dropped connections
                reason = f"{type(err).__name__}: {self._scrub(str(err)) or 'no detail'}"
            else:
                if response.status_code == 200:
                    return _content(response)
                reason = f"HTTP {response.status_code}: {self._scrub(response.text[:200])}"
                if response.status_code not in RETRY_STATUS:
                    return None, reason
                delay = _retry_after(response.headers.get("retry-after"), delay)
            if attempt < self.options.max_retries:
                time.sleep(min(delay, MAX_BACKOFF_S))
        return None, f"{reason} (after {self.options.max_retries} retries)"

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()


def _content(response) -> tuple[str | None, str | None]:
    try:
        text = response.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        return None, f"malformed response: {response.text[:200]!r}"
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
