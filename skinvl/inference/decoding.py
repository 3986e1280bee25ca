"""Decoding presets: ``greedy`` (the default everywhere) and ``paper`` (the authors' evaluation decoding).

The authors evaluate with sampled beam search (temperature 0.2, top_p 0.9, 5 beams, 20..256 new
tokens), which is not deterministic; runs seed it so that they repeat on the same hardware.
Local generation passes these to ``model.generate``; served models get the matching request fields.
"""

from __future__ import annotations

from typing import Any

# ``skinvl generate``, ``answer_batch`` and the demo: a short answer by default.
DEFAULT_MAX_NEW_TOKENS = 128

PAPER_DECODING: dict[str, Any] = {
    "do_sample": True, "temperature": 0.2, "top_p": 0.9, "num_beams": 5, "min_new_tokens": 20,
    "max_new_tokens": 256,
}
GREEDY_DECODING: dict[str, Any] = {"do_sample": False, "num_beams": 1, "max_new_tokens": 256}
DECODINGS = {"greedy": GREEDY_DECODING, "paper": PAPER_DECODING}
DECODING_HELP = ("greedy (deterministic) or paper (sampling T=0.2, top_p 0.9, 5 beams, 20..256 new tokens; "
                 "seeded)")


def decoding_kwargs(decoding: str, max_new_tokens: int | None = None) -> dict[str, Any]:
    """``generate`` keyword arguments of a named decoding ("greedy" or "paper"), optionally capped."""
    if decoding not in DECODINGS:
        raise ValueError(f"unknown decoding {decoding!r}; choose from {sorted(DECODINGS)}")
    kwargs = dict(DECODINGS[decoding])
    if max_new_tokens is not None:
        kwargs["max_new_tokens"] = max_new_tokens
        if kwargs.get("min_new_tokens", 0) > max_new_tokens:
            kwargs["min_new_tokens"] = max_new_tokens
    return kwargs


__all__ = ["DECODINGS", "DECODING_HELP", "DEFAULT_MAX_NEW_TOKENS", "GREEDY_DECODING", "PAPER_DECODING",
           "decoding_kwargs"]
