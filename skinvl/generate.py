"""``skinvl generate``: answer questions about image files with any model the inference core loads.

``answer_batch``, ``iter_answers`` and ``build_prompt`` live in :mod:`skinvl.inference` and are
importable from here too (``skinvl.generate.answer_batch``, as model cards show).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mm_skin.cli import ExitCode, add_command, print_problem
from skinvl.inference.batching import answer_batch, iter_answers
from skinvl.inference.decoding import DEFAULT_MAX_NEW_TOKENS
from skinvl.inference.options import (
    MODEL_HELP,
    ModelError,
    ModelOptions,
)
from skinvl.inference.prompts import build_prompt
from skinvl.prompt_templates import IMAGE_ASPECT_RATIOS


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
    from skinvl.inference.images import ImageFileError, open_rgb
    from skinvl.inference.loading import load_model

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
    try:
        prompts = [loaded.prompt(q) for q in questions]
    except ModelError as err:  # a template over its limits, or one the sandbox rejects
        return _fail(str(err))
    batches = iter_answers(loaded.model, loaded.processor, images, prompts, batch_size=options.batch_size,
                           max_new_tokens=options.max_new_tokens)
    answers = [a for batch in batches for a in batch]
    for path, question, answer in zip(options.image, questions, answers, strict=True):
        if len(images) > 1:
            print(f"[{path}] Q: {question}")
        print(answer)
    return ExitCode.OK


def _fail(message: str) -> int:
    print_problem(message)
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
