"""Answer questions about images with a vision-language model: ``answer_batch`` and ``skinvl generate``.

:func:`iter_answers` is THE batching loop (left padding, attention masks, greedy by default);
``answer_batch`` and ``skinvl eval`` both go through it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from mm_skin.cli import ExitCode, add_command
from skinvl.evaluation.models import MODEL_HELP, ModelError, ModelOptions, chat_prompt
from skinvl.processing_skinvl import IMAGE_ASPECT_RATIOS

DEFAULT_MAX_NEW_TOKENS = 128


def build_prompt(processor, question: str, *, template: str | None = None) -> str:
    """Return the prompt for one question about one image, rendered with ``template``.

    ``template`` is a chat template name of the processor ("mistral_instruct", "vicuna_v1") or
    Jinja text; None uses the processor's default. For SkinVL the result is what the authors'
    ``conv.get_prompt()`` gives for a user turn ``"<image>\\n{question}"`` and an open assistant turn.
    """
    return chat_prompt(processor, question, template)


def iter_answers(
    model, processor, images: Sequence[Any], prompts: Sequence[str], *, batch_size: int = 8, **generate_kwargs: Any
) -> Iterator[list[str]]:
    """Yield the answers batch by batch: ``prompts[i]`` (rendered text) about ``images[i]``.

    ``images`` may be any sliceable sequence of PIL images (a lazy one decodes per batch).
    Rows are left-padded (generation continues every row from its last real token) with an
    attention mask, so greedy answers do not depend on ``batch_size``. ``generate_kwargs`` go to
    ``model.generate`` (default greedy, ``max_new_tokens`` 128). Answers are the new text only,
    special tokens removed, stripped.
    """
    import torch

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    tokenizer = getattr(processor, "tokenizer", processor)
    kwargs: dict[str, Any] = {"do_sample": False, "num_beams": 1, "max_new_tokens": DEFAULT_MAX_NEW_TOKENS}
    kwargs.update(generate_kwargs)
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

    Prompts come from the processor's chat template (``template``: a name or Jinja text);
    batching, padding and decoding as :func:`iter_answers`.
    """
    if len(images) != len(questions):
        raise ValueError(
            f"answer_batch needs one question per image: got {len(images)} images and "
            f"{len(questions)} questions."
        )
    for index, question in enumerate(questions):
        if not isinstance(question, str) or not question.strip():
            raise ValueError(f"questions[{index}] must be a non-empty string, got {question!r}.")
    prompts = [build_prompt(processor, q, template=template) for q in questions]
    batches = iter_answers(model, processor, images, prompts, batch_size=batch_size, **generate_kwargs)
    return [answer for batch in batches for answer in batch]


def _as_rgb(image: Any, index: int):
    from PIL import Image

    if not isinstance(image, Image.Image):
        raise TypeError(f"images[{index}] must be a PIL.Image.Image, got {type(image).__name__}.")
    return image.convert("RGB") if image.mode != "RGB" else image


@dataclass(kw_only=True)
class GenerateOptions(ModelOptions):
    """``skinvl generate``: the model options plus the images and questions."""

    model: str = field(metadata=MODEL_HELP)  # required here: no endpoint alternative

    image: list[str] = field(metadata={"help": "image file(s): --image a.png b.png or repeated", "action": "extend"})
    question: list[str] = field(metadata={
        "help": "question(s): one for all images, or one per image", "action": "extend"})
    image_aspect_ratio: str | None = field(default=None, metadata={
        "help": "SkinVL only: pad (square in the CLIP mean colour, training) or crop (the authors' "
        "evaluation); default: the checkpoint's", "choices": list(IMAGE_ASPECT_RATIOS)})
    max_new_tokens: int = field(default=DEFAULT_MAX_NEW_TOKENS, metadata={"help": "cap on generated tokens"})
    batch_size: int = field(default=8, metadata={"help": "images per forward pass"})


def run_generate(options: GenerateOptions) -> int:
    """``skinvl generate``: print the answer to each question (exit code :class:`ExitCode`)."""
    from skinvl.evaluation.images import ImageFileError, open_rgb
    from skinvl.evaluation.models import load_model

    questions = list(options.question)
    if len(questions) == 1 and len(options.image) > 1:
        questions = questions * len(options.image)
    if len(questions) != len(options.image):
        return _fail(f"got {len(options.image)} --image and {len(questions)} --question; give one "
                     "question, or one per image.")
    try:
        images = [open_rgb(path) for path in options.image]
        loaded = load_model(options)
    except (ImageFileError, ModelError) as err:
        return _fail(str(err))
    if options.image_aspect_ratio is not None:
        if not hasattr(loaded.processor, "set_image_aspect_ratio"):
            return _fail("--image-aspect-ratio applies to SkinVL models only.")
        loaded.processor.set_image_aspect_ratio(options.image_aspect_ratio)
    if options.model == "skinvl-tiny":
        print("NOTE: skinvl-tiny has RANDOM weights (a toy for demos and tests); its answer is "
              "meaningless noise.")
    prompts = [loaded.prompt(q) for q in questions]
    batches = iter_answers(loaded.model, loaded.processor, images, prompts, batch_size=options.batch_size,
                           max_new_tokens=options.max_new_tokens)
    answers = [a for batch in batches for a in batch]
    for path, question, answer in zip(options.image, questions, answers, strict=True):
        if len(images) > 1:
            print(f"[{path}] Q: {question}")
        print(answer)
    return ExitCode.OK


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return ExitCode.BAD_INPUT


def register_cli(subparsers) -> None:
    """Add ``skinvl generate`` (options from :class:`GenerateOptions`)."""
    add_command(
        subparsers, "generate", GenerateOptions, run_generate,
        help="answer a question about an image with a vision-language model",
        description="Answer a question about one or more images. --model is a preset "
        "('skinvl-tiny' has random weights), a SkinVL folder, a folder in the authors' llava_mistral "
        "format, a Hub id, or any AutoModelForImageTextToText checkpoint.",
    )


__all__ = ["GenerateOptions", "answer_batch", "build_prompt", "iter_answers", "register_cli", "run_generate"]
