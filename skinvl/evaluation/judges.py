"""Judge models: a served one (any OpenAI-compatible server) or a local checkpoint, and the verdict cache.

A judge turns rubric prompts into reply texts, temperature 0 (greedy), text only:

- :class:`EndpointJudge` reuses :class:`~skinvl.evaluation.endpoint.EndpointAnswerer`'s client
  (``--concurrency`` requests in flight, retries with backoff on 429 / 5xx / lost connections, the
  key from ``--api-key-env`` sent as a Bearer token and scrubbed from every recorded error). It
  asks for JSON mode (``response_format: json_object``); a server that refuses that field with
  HTTP 400 is asked again without it, and the run records that JSON mode was off.
- :class:`LocalJudge` runs a checkpoint on this machine: an image-text-to-text one through the
  evaluation's model loader (text-only turn), any other through ``AutoModelForCausalLM``.

:class:`VerdictCache` is a JSONL file of verdicts keyed by blake2b(judge id, rubric hash, question,
reference, candidate), appended and flushed per verdict: a re-run asks nothing already asked and a
killed run resumes where it stopped. Failed requests (the server never answered) are not cached.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from skinvl.evaluation.endpoint import EndpointAnswerer, EndpointOptions
from skinvl.evaluation.judge_rubrics import SYSTEM

JSON_MODE = {"type": "json_object"}


def cache_key(judge_id: str, rubric_hash: str, question: str, reference: str, candidate: str) -> str:
    """The cache key of one judged answer."""
    text = json.dumps([judge_id, rubric_hash, question, reference, candidate], ensure_ascii=False)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


class VerdictCache:
    """Verdicts by key in a JSONL file; a torn last line (a killed run) is ignored and cut off."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.records: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            data = self.path.read_bytes()
            if data and not data.endswith(b"\n"):
                data = data[: data.rfind(b"\n") + 1]
                self.path.write_bytes(data)
            for line in data.decode("utf-8", errors="replace").splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a damaged line is asked again, never trusted
                if isinstance(record, dict) and isinstance(record.get("key"), str):
                    self.records[record["key"]] = record

    def get(self, key: str) -> dict[str, Any] | None:
        """The cached verdict of ``key`` (None when never asked)."""
        return self.records.get(key)

    def put(self, record: dict[str, Any]) -> None:
        """Store and append one verdict (``record["key"]``), flushed at once."""
        self.records[record["key"]] = record
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            f.flush()


class EndpointJudge:
    """A served judge model; ``ask`` yields (index, reply or None, error or None) in completion order."""

    def __init__(self, options: EndpointOptions, max_tokens: int):
        self.client = EndpointAnswerer(options, {"temperature": 0.0, "max_tokens": max_tokens, "seed": 0})
        self.model = options.model_name
        self.id = f"endpoint:{options.model_name}"
        self.json_mode = True
        self.decoding = {"temperature": 0.0, "max_tokens": max_tokens, "seed": 0}

    def body(self, prompt: str) -> dict[str, Any]:
        """The chat request of one rubric prompt (system + user text, no image)."""
        body = {"model": self.model, "messages": [{"role": "system", "content": SYSTEM},
                                                  {"role": "user", "content": prompt}], **self.client.params}
        return {**body, "response_format": JSON_MODE} if self.json_mode else body

    def _one(self, prompt: str) -> tuple[str | None, str | None]:
        body = self.body(prompt)
        text, error = self.client.post(body)
        if error and "response_format" in body and error.startswith("HTTP 400") and "response_format" in error:
            self.json_mode = False  # the server does not offer JSON mode: ask in plain text from now on
            text, error = self.client.post(self.body(prompt))
        return text, error

    def ask(self, prompts: Sequence[str]) -> Iterator[tuple[int, str | None, str | None]]:
        """Ask every prompt, ``concurrency`` at a time."""
        with ThreadPoolExecutor(max_workers=self.client.options.concurrency) as pool:
            futures = {pool.submit(self._one, p): i for i, p in enumerate(prompts)}
            try:
                for future in as_completed(futures):
                    yield (futures[future], *future.result())
            finally:
                for future in futures:
                    future.cancel()

    def info(self) -> dict[str, Any]:
        """What identifies this judge in results.json (never the key, never credentials in the URL)."""
        from skinvl.evaluation.ask import public_url

        return {"id": self.id, "kind": "endpoint", "model_name": self.model,
                "endpoint": public_url(self.client.options.endpoint or ""), "json_mode": self.json_mode,
                "decoding": self.decoding}

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()


class LocalJudge:
    """A judge checkpoint run here, greedy, one prompt at a time."""

    def __init__(self, path: str, *, max_new_tokens: int, dtype: str | None = None, device_map: str | None = None,
                 trust_remote_code: bool = False):
        self.path, self.max_new_tokens = path, max_new_tokens
        self.decoding = {"do_sample": False, "num_beams": 1, "max_new_tokens": max_new_tokens}
        self._generate, self.details = _load_local(path, dtype=dtype, device_map=device_map,
                                                   trust_remote_code=trust_remote_code)
        version = self.details.get("weights_blake2b") or self.details.get("revision") or "unhashed"
        self.id = f"local:{Path(path).name}@{version}"

    def ask(self, prompts: Sequence[str]) -> Iterator[tuple[int, str | None, str | None]]:
        """Answer every prompt in order."""
        for i, prompt in enumerate(prompts):
            yield i, self._generate(f"{SYSTEM}\n\n{prompt}", self.decoding), None

    def info(self) -> dict[str, Any]:
        """What identifies this judge in results.json."""
        return {"id": self.id, "kind": "local", "model": self.path, **self.details, "json_mode": False,
                "decoding": self.decoding}

    def close(self) -> None:
        """Nothing to release."""


def _is_image_text_to_text(path: str, trust_remote_code: bool) -> bool:
    from transformers import AutoConfig

    import skinvl  # noqa: F401  (registers SkinVL and the authors' format with AutoConfig)
    from skinvl.inference.loading import is_image_text_to_text
    from skinvl.presets import PRESET_NAMES

    if path in PRESET_NAMES:
        return True
    return is_image_text_to_text(AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code).model_type)


def _load_local(path: str, *, dtype: str | None, device_map: str | None,
                trust_remote_code: bool) -> tuple[Callable[[str, dict], str], dict[str, Any]]:
    """(generate(prompt, decoding) -> reply, provenance) of a local judge checkpoint."""
    from skinvl.inference.loading import load_model, weights_hash
    from skinvl.inference.options import ModelError, ModelOptions

    try:
        vision = _is_image_text_to_text(path, trust_remote_code)
    except (OSError, ValueError) as err:
        raise ModelError(f"--judge-model {path!r}: cannot load its config ({str(err).splitlines()[0]}); pass a "
                         "checkpoint folder or Hub id, or --judge-endpoint URL for a served judge.") from err
    if vision:
        loaded = load_model(ModelOptions(model=path, dtype=dtype, device_map=device_map,
                                         trust_remote_code=trust_remote_code))
        model, processor, tokenizer = loaded.model, loaded.processor, loaded.processor.tokenizer
        details = {k: loaded.info.get(k) for k in ("model_type", "class", "revision", "weights_blake2b", "dtype")}
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from skinvl.modeling_skinvl import parse_dtype

        kwargs = {k: v for k, v in (("dtype", parse_dtype(dtype)), ("device_map", device_map)) if v is not None}
        try:
            model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=trust_remote_code, **kwargs).eval()
            tokenizer = processor = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        except (OSError, ValueError) as err:
            raise ModelError(f"--judge-model {path!r}: not loadable as a causal LM ({str(err).splitlines()[0]}).") from err
        details = {"model_type": model.config.model_type, "class": type(model).__name__,
                   "revision": getattr(model.config, "_commit_hash", None), "weights_blake2b": weights_hash(path)}

    def generate(prompt: str, decoding: dict) -> str:
        import torch

        if getattr(processor, "chat_template", None) or getattr(tokenizer, "chat_template", None):
            messages = [{"role": "user", "content": [{"type": "text", "text": prompt}] if vision else prompt}]
            text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        else:  # no chat template: the bare prompt
            text = prompt
        inputs = (processor(text=[text], return_tensors="pt") if vision else tokenizer(text, return_tensors="pt"))
        inputs = inputs.to(model.device)
        with torch.inference_mode():
            out = model.generate(**inputs, **decoding, pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
        return tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()

    return generate, details


__all__ = ["EndpointJudge", "LocalJudge", "VerdictCache", "cache_key"]
