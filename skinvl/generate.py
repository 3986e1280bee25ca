"""Answer questions about images with a SkinVL model: ``answer_batch`` and ``skinvl generate``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

DEFAULT_MAX_NEW_TOKENS = 128


def build_prompt(processor, question: str, *, template: str | None = None) -> str:
    """Return the prompt for one question about one image, rendered with ``template``.

    ``template`` is a chat template name of the processor ("mistral_instruct", "vicuna_v1"); None
    uses the processor's default. The result is what the authors' ``conv.get_prompt()`` gives for a
    user turn ``"<image>\\n{question}"`` and an open assistant turn.
    """
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    return processor.apply_chat_template(messages, chat_template=template, add_generation_prompt=True)


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

    Batches of ``batch_size`` are left-padded and decoded greedily unless ``generate_kwargs``
    say otherwise (they go to ``model.generate``; ``max_new_tokens`` defaults to 128). Each answer
    is only the newly generated text, special tokens removed, stripped.
    """
    import torch

    if len(images) != len(questions):
        raise ValueError(
            f"answer_batch needs one question per image: got {len(images)} images and "
            f"{len(questions)} questions."
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    for index, question in enumerate(questions):
        if not isinstance(question, str) or not question.strip():
            raise ValueError(f"questions[{index}] must be a non-empty string, got {question!r}.")

    tokenizer = processor.tokenizer
    kwargs: dict[str, Any] = {"do_sample": False, "num_beams": 1, "max_new_tokens": DEFAULT_MAX_NEW_TOKENS}
    kwargs.update(generate_kwargs)
    if kwargs.get("pad_token_id") is None and model.generation_config.pad_token_id is None:
        kwargs["pad_token_id"] = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        )
    device = model.device
    dtype = next(model.parameters()).dtype

    answers: list[str] = []
    previous_side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # generation continues every row from its last real token
    try:
        for start in range(0, len(images), batch_size):
            batch_images = [_as_rgb(image, start + i) for i, image in enumerate(images[start : start + batch_size])]
            prompts = [build_prompt(processor, q, template=template) for q in questions[start : start + batch_size]]
            inputs = processor(images=batch_images, text=prompts, padding=True, return_tensors="pt")
            inputs = {k: v.to(device) for k, v in inputs.items()}
            inputs["pixel_values"] = inputs["pixel_values"].to(dtype)
            with torch.inference_mode():
                output = model.generate(**inputs, **kwargs)
            new_tokens = output[:, inputs["input_ids"].shape[1] :]
            answers.extend(
                text.strip() for text in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
            )
    finally:
        tokenizer.padding_side = previous_side
    return answers


def _as_rgb(image: Any, index: int):
    from PIL import Image

    if not isinstance(image, Image.Image):
        raise TypeError(f"images[{index}] must be a PIL.Image.Image, got {type(image).__name__}.")
    return image.convert("RGB") if image.mode != "RGB" else image


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add ``skinvl generate``."""
    parser = subparsers.add_parser(
        "generate",
        help="answer a question about an image with a SkinVL model",
        description="Answer a question about one or more images. --model is a preset "
        "('skinvl-tiny' has random weights), a native SkinVL folder, a folder in the authors' "
        "llava_mistral format, or a Hub id.",
    )
    parser.add_argument("--model", required=True, help="preset, checkpoint folder or Hub id")
    parser.add_argument("--image", required=True, action="append", help="image file (repeatable)")
    parser.add_argument(
        "--question", required=True, action="append",
        help="question (repeat once per --image, or give one for all images)",
    )
    parser.add_argument("--template", choices=["mistral_instruct", "vicuna_v1"], default=None,
                        help="prompt template (default: the checkpoint's, mistral_instruct for SkinVL)")
    parser.add_argument("--image-aspect-ratio", choices=["pad", "crop"], default=None,
                        help="pad to a square in the CLIP mean colour (training) or centre-crop "
                        "(the authors' evaluation); default: the checkpoint's")
    parser.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--dtype", default=None, help="e.g. float32, bfloat16, float16")
    parser.add_argument("--device-map", default=None, help="e.g. cpu, cuda, auto")
    parser.set_defaults(func=_run_generate)


def _run_generate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from PIL import Image

    import skinvl

    questions = list(args.question)
    if len(questions) == 1 and len(args.image) > 1:
        questions = questions * len(args.image)
    if len(questions) != len(args.image):
        print(f"error: got {len(args.image)} --image and {len(questions)} --question; give one "
              "question, or one per image.", file=sys.stderr)
        return 2
    images = []
    for path in args.image:
        if not Path(path).is_file():
            print(f"error: image file {path} does not exist.", file=sys.stderr)
            return 2
        try:
            with Image.open(path) as image:
                images.append(image.convert("RGB"))
        except OSError as err:
            print(f"error: cannot read image {path}: {err}", file=sys.stderr)
            return 2
    try:
        model, processor = skinvl.load(args.model, dtype=args.dtype, device_map=args.device_map,
                                       template=args.template)
    except (OSError, ValueError) as err:
        print(f"error: cannot load model {args.model!r}: {err}", file=sys.stderr)
        return 2
    if args.image_aspect_ratio is not None:
        processor.set_image_aspect_ratio(args.image_aspect_ratio)
    if args.model == "skinvl-tiny":
        print("NOTE: skinvl-tiny has RANDOM weights (a toy for demos and tests); its answer is "
              "meaningless noise.")
    answers = answer_batch(model, processor, images, questions, batch_size=args.batch_size,
                           max_new_tokens=args.max_new_tokens)
    for path, question, answer in zip(args.image, questions, answers, strict=True):
        if len(images) > 1:
            print(f"[{path}] Q: {question}")
        print(answer)
    return 0


__all__ = ["answer_batch", "build_prompt", "register_cli"]
