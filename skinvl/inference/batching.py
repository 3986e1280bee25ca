"""THE batching loop: prompts and images in, answers out, batch by batch.

:func:`iter_answers` (left padding, attention masks, greedy by default) serves ``answer_batch``,
``skinvl generate``, ``skinvl eval`` (through :class:`LocalAnswerer`) and the demo.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from skinvl.inference.decoding import DEFAULT_MAX_NEW_TOKENS, decoding_kwargs
from skinvl.inference.images import to_rgb
from skinvl.inference.prompts import family_prompt


def iter_answers(
    model, processor, images: Sequence[Any], prompts: Sequence[str], *, batch_size: int = 8, **generate_kwargs: Any
) -> Iterator[list[str]]:
    """Yield the answers batch by batch: ``prompts[i]`` (rendered text) about ``images[i]``.

    ``images`` may be any sliceable sequence of PIL images (a lazy one decodes per batch); each
    is converted to 8-bit RGB by :func:`skinvl.inference.images.to_rgb`. Rows are left-padded
    (generation continues every row from its last real token) with an attention mask, so greedy
    answers do not depend on ``batch_size``. ``generate_kwargs`` go to ``model.generate`` (default
    greedy, ``max_new_tokens`` 128). Answers are the new text only, special tokens removed, stripped.
    """
    import torch

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    tokenizer = getattr(processor, "tokenizer", processor)
    kwargs = {**decoding_kwargs("greedy", DEFAULT_MAX_NEW_TOKENS), **generate_kwargs}
    saved = tokenizer.padding_side, tokenizer.pad_token
    if tokenizer.pad_token is None:  # padding needs a pad token; it is masked out anyway
        tokenizer.pad_token = tokenizer.eos_token
    if kwargs.get("pad_token_id") is None and model.generation_config.pad_token_id is None:
        kwargs["pad_token_id"] = tokenizer.pad_token_id
    dtype = next(model.parameters()).dtype
    tokenizer.padding_side = "left"
    try:
        for start in range(0, len(prompts), batch_size):
            batch = [_as_rgb(im, start + i) for i, im in enumerate(images[start : start + batch_size])]
            inputs = _encode(processor, batch, list(prompts[start : start + batch_size]))
            inputs = {k: (v.to(model.device, dtype) if v.is_floating_point() else v.to(model.device))
                      for k, v in inputs.items()}
            with torch.inference_mode():
                output = model.generate(**inputs, **kwargs)
            new_tokens = output[:, inputs["input_ids"].shape[1] :]
            yield [text.strip() for text in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
    finally:
        tokenizer.padding_side, tokenizer.pad_token = saved


def _encode(processor, images: list, prompts: list[str]) -> dict:
    tokenizer = processor.tokenizer
    # A chat template that writes <bos> itself (Gemma 3, ...) must not get a second one.
    bos = tokenizer.bos_token
    add_special = not (bos and all(p.startswith(bos) for p in prompts))
    # One image per prompt, nested per sample: the form every multimodal processor accepts.
    inputs = processor(images=[[image] for image in images], text=prompts, padding=True, return_tensors="pt",
                       add_special_tokens=add_special)
    inputs.pop("labels", None)  # PaliGemma's processor adds training labels
    return dict(inputs)


def answer_batch(
    model,
    processor,
    images: Sequence[Any],
    questions: Sequence[str],
    *,
    template: str | None = None,
    batch_size: int = 8,
    **generate_kwargs: Any,
) -> list[str]:
    """Answer ``questions[i]`` about ``images[i]`` for every i; return the answers in order.

    Prompts are built as the model's family wants them (its chat template, ``template``: a name
    or Jinja text); batching, padding and decoding as :func:`iter_answers`.
    """
    if len(images) != len(questions):
        raise ValueError(
            f"answer_batch needs one question per image: got {len(images)} images and "
            f"{len(questions)} questions."
        )
    for index, question in enumerate(questions):
        if not isinstance(question, str) or not question.strip():
            raise ValueError(f"questions[{index}] must be a non-empty string, got {question!r}.")
    prompts = [family_prompt(model, processor, q, template) for q in questions]
    batches = iter_answers(model, processor, images, prompts, batch_size=batch_size, **generate_kwargs)
    return [answer for batch in batches for answer in batch]


def _as_rgb(image: Any, index: int):
    from PIL import Image

    if not isinstance(image, Image.Image):
        raise TypeError(f"images[{index}] must be a PIL.Image.Image, got {type(image).__name__}.")
    return to_rgb(image)


class LocalAnswerer:
    """Answers rows with a loaded model, batch by batch (the :class:`~skinvl.evaluation.runs.Answerer`).

    ``rows`` are objects with ``question`` and ``record(prediction)``; ``loaded`` is a
    :class:`~skinvl.inference.loading.LoadedModel`.
    """

    def __init__(self, loaded: Any, *, batch_size: int, generate_kwargs: dict[str, Any], seed: int = 0):
        self.loaded, self.batch_size, self.generate_kwargs, self.seed = loaded, batch_size, generate_kwargs, seed

    def answer(self, rows: Sequence[Any], images: Sequence[Any]) -> Iterator[list[dict[str, Any]]]:
        """Yield the records of each batch as soon as it is generated."""
        from transformers import set_seed

        set_seed(self.seed)
        prompts = [self.loaded.prompt(row.question) for row in rows]
        start = 0
        for answers in iter_answers(self.loaded.model, self.loaded.processor, images, prompts,
                                    batch_size=self.batch_size, **self.generate_kwargs):
            yield [row.record(a) for row, a in zip(rows[start : start + len(answers)], answers, strict=True)]
            start += len(answers)


__all__ = ["LocalAnswerer", "answer_batch", "iter_answers"]
