"""``skinvl demo``: try a SkinVL model in the browser (Gradio), or export that app as a HF Space.

The app answers a question about an uploaded image (or one of the MM-Skin test examples of a built
dataset folder or Hub id), streaming the answer token by token (transformers'
``TextIteratorStreamer``), and shows the image as the model sees it (the processor's own "pad"
or "crop" pre-processing). A second tab asks the paper's zero-shot question for a list of class
names and parses the answer with :mod:`skinvl.evaluation.zeroshot`. Models, prompts and
decodings are ``skinvl eval``'s: any checkpoint :func:`skinvl.inference.loading.load_model` loads
(SkinVL presets and folders, the authors' format, other ``AutoModelForImageTextToText`` models),
generated with :func:`skinvl.generate.iter_answers`.

Gradio is imported only when an app is built (``pip install 'mm-skin[demo]'``); the app never
contacts the internet by itself (no analytics, no version check, no Google fonts) unless
``--share`` asks for a public link through Gradio's share servers.

Example::

    skinvl demo --model skinvl-tiny --data mm-skin              # http://127.0.0.1:7860
    skinvl demo --export-space space --model zwq803/SkinVL-PubMM
    skinvl push space OWNER/skinvl-demo --repo-type space
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from transformers import StoppingCriteria

from mm_skin.cli import ExitCode, add_command, print_problem
from skinvl.demo_options import NOTICE, DemoOptions
from skinvl.evaluation.vqa import load_vqa_split
from skinvl.evaluation.zeroshot import PARSE_PROTOCOLS, ParsedAnswer, parse_answer
from skinvl.evaluation.zeroshot import build_prompt as zeroshot_prompt
from skinvl.inference.batching import iter_answers
from skinvl.inference.decoding import DECODINGS, DEFAULT_MAX_NEW_TOKENS, decoding_kwargs
from skinvl.inference.loading import LoadedModel, load_model
from skinvl.inference.options import ModelError, first_line

TINY_NOTICE = "`skinvl-tiny` has random weights: its answers are noise by design (a toy for tests)."
# The most frequent questions of the official MM-Skin VQA test split (Dataframe/test/vqa/
# MM-Skin_test.csv, 5,452 rows), in order of frequency.
COMMON_QUESTIONS = (
    "What type of skin condition does this image depict?",
    "What is the main focus of this image?",
    "What does the image show?",
    "What type of skin condition does this person have?",
    "Are there any other notable features in the image?",
    "Is there any treatment available for this condition?",
    "What type of tissue is shown in this image?",
    "What type of cells are present in this image?",
)
# HAM10000's classes, one of the paper's zero-shot benchmarks.
DEFAULT_CLASSES = (
    "Nevus, Melanoma, Benign Keratosis, Basal Cell Carcinoma, Actinic Keratoses, "
    "Dermatofibroma, Vascular lesions"
)
VIEW_MIN_SIDE = 224  # the model view is enlarged (nearest neighbour) to at least this many px
# What one visitor may ask of the shared model. MM-Skin questions are 10-30 tokens and a zero-shot
# class list about 100; a 1 MB question once held the model (and every other visitor) for 25 min.
MAX_QUESTION_TOKENS = 512
MAX_QUESTION_CHARS = 8 * MAX_QUESTION_TOKENS  # checked first, so a flood is not even tokenized
MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # a dermatology photo is a few MB; Gradio refuses larger uploads (413)
CONCURRENCY = 1  # questions generated at once: one model, one GPU
MAX_QUEUE = 32  # visitors waiting; more are told the queue is full instead of waiting for ever
# Gradio deletes uploads older than an hour, every hour, while the app runs; all of them on exit.
DELETE_CACHE = (3600, 3600)


# --------------------------------------------------------------------------- model side (no gradio)


def model_view(processor, image) -> Any:
    """Return ``image`` as the model sees it: the processor's own pad/crop + resize, unnormalised.

    Runs the processor's image processor with rescaling and normalisation off, so the result is
    exactly the pixels the vision tower gets, before the mean/std are applied (for processors
    that cut an image into tiles: the first tile).
    """
    import numpy as np
    from PIL import Image

    pixels = np.asarray(processor.image_processor(
        image.convert("RGB"), do_rescale=False, do_normalize=False, return_tensors="np"
    )["pixel_values"])
    while pixels.ndim > 3:  # batch (and tile) dimensions
        pixels = pixels[0]
    return Image.fromarray(np.clip(pixels, 0, 255).astype("uint8").transpose(1, 2, 0))


def view_caption(processor) -> str:
    """Say how the processor turns an image into the model's input (SkinVL: pad or crop)."""
    from PIL import Image

    width, height = model_view(processor, Image.new("RGB", (4, 2))).size
    how = ""
    if hasattr(processor, "set_image_aspect_ratio"):  # SkinVL: "pad" or "crop"
        how = (": padded to a square in the CLIP mean colour, then resized" if processor.image_processor.do_pad
               else ": resized and centre-cropped")
    return f"As the model sees it{how} ({width}×{height} px)"


class _StopOnEvent(StoppingCriteria):
    """Stop generating once ``event`` is set (the browser went away, or the answer was read)."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids, scores, **kwargs) -> Any:
        import torch

        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


def stream_answer(
    loaded: LoadedModel,
    image,
    question: str,
    *,
    template: str | None = None,
    decoding: str = "greedy",
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    seed: int = 0,
    lock: threading.Lock | None = None,
) -> Iterator[str]:
    """Yield the answer to ``question`` about ``image`` as it grows; the last value is the answer.

    The prompt is the model's (``template``: a template name of the processor or Jinja text; None:
    the loaded one), generated by :func:`skinvl.inference.batching.iter_answers` in a thread with a
    ``TextIteratorStreamer``; the last value is exactly ``iter_answers``' (stripped) answer. Beam
    search (the paper's decoding) cannot stream in transformers: then only the answer is yielded.
    ``lock`` serialises generation when several browsers share one model.
    """
    from transformers import StoppingCriteriaList, TextIteratorStreamer, set_seed

    prompt = loaded.prompt(question, template)
    kwargs = decoding_kwargs(decoding, max_new_tokens)
    stop = threading.Event()
    kwargs["stopping_criteria"] = StoppingCriteriaList([_StopOnEvent(stop)])
    streamer = None
    if kwargs.get("num_beams", 1) == 1:
        streamer = TextIteratorStreamer(loaded.processor.tokenizer, skip_prompt=True, skip_special_tokens=True)
        kwargs["streamer"] = streamer
    result: dict[str, Any] = {}

    def work() -> None:
        try:
            with lock or threading.Lock():
                set_seed(seed)
                batches = iter_answers(loaded.model, loaded.processor, [image], [prompt], batch_size=1, **kwargs)
                # Run the generator to its end, so it restores the tokenizer inside the lock.
                result["answer"] = [answer for batch in batches for answer in batch][0]
        except BaseException as err:  # noqa: B036 - re-raised in the caller's thread below
            result["error"] = err
            if streamer is not None:
                streamer.end()  # unblock the consumer

    thread = threading.Thread(target=work, name="skinvl-demo-generate", daemon=True)
    thread.start()
    try:
        text = ""
        for piece in streamer or ():
            text += piece
            yield text
        thread.join()
    finally:
        stop.set()  # the consumer is gone (or done): let generation end early
    if "error" in result:
        raise result["error"]
    yield result["answer"]


def parse_class_names(text: str) -> list[str]:
    """Class names from comma- or newline-separated text: stripped, empty and repeated ones dropped."""
    names: list[str] = []
    for part in text.replace("\n", ",").split(","):
        name = part.strip()
        if name and name.lower() not in {n.lower() for n in names}:
            names.append(name)
    return names


def describe_parsed(parsed: ParsedAnswer) -> str:
    """One line for the parsed zero-shot class (the ``robust``/``paper`` parsers' status spelled out)."""
    if parsed.label is None:
        return "unparseable: the answer names none of the classes"
    if parsed.status == "ambiguous":
        return f"{parsed.label} (ambiguous: several classes are named; the first one counts)"
    return parsed.label


def load_test_examples(data: str, folder: Path, limit: int = 8) -> list[list[str]]:
    """``[[image_file, question], ...]`` for the first ``limit`` rows of ``data``'s VQA test split.

    ``data`` is a built MM-Skin folder or Hub id (``load_dataset(data, "vqa", split="test")``);
    the images are written as PNG files into ``folder`` for the app to serve.
    """
    dataset = load_vqa_split(data, "vqa", "test", limit=limit)
    examples = []
    for index, row in enumerate(dataset):
        path = folder / f"mm-skin-test-{index}.png"
        row["image"].convert("RGB").save(path)
        examples.append([str(path), row["question"]])
    return examples


def template_choices(loaded: LoadedModel) -> tuple[dict[str, str | None], str]:
    """``{label: template}`` the app offers (the processor's named ones, or the loaded one) and the
    label of the loaded one; ``template`` is what :func:`stream_answer` takes."""
    templates = loaded.processor.chat_template
    choices: dict[str, str | None] = {}
    if isinstance(templates, dict) and (loaded.template is None or loaded.template in templates):
        choices = {name: name for name in sorted(templates) if name != "default"}
    choices.setdefault(loaded.template_name, loaded.template)
    return choices, loaded.template_name


# --------------------------------------------------------------------------- the Gradio app


def _check_inputs(image, text: str, what: str) -> None:
    import gradio as gr

    if image is None:
        raise gr.Error("Upload an image, or pick one of the examples, first.")
    if not text or not text.strip():
        raise gr.Error(f"Type {what} first.")


def check_question_length(loaded: LoadedModel, text: str, what: str = "question") -> None:
    """Refuse (gr.Error) a text over MAX_QUESTION_CHARS characters or MAX_QUESTION_TOKENS tokens."""
    import gradio as gr

    if len(text) > MAX_QUESTION_CHARS:
        raise gr.Error(f"The {what} is {len(text):,} characters long; this demo takes at most "
                       f"{MAX_QUESTION_TOKENS} tokens (about {MAX_QUESTION_CHARS // 2:,} characters).")
    tokens = len(loaded.processor.tokenizer(text, add_special_tokens=False)["input_ids"])
    if tokens > MAX_QUESTION_TOKENS:
        raise gr.Error(f"The {what} is {tokens:,} tokens long; this demo takes at most {MAX_QUESTION_TOKENS}.")


def _handlers(loaded: LoadedModel) -> tuple[Any, Any, Any]:
    """The app's three callbacks: model view, answer (streamed), zero-shot (streamed + parsed)."""
    import gradio as gr

    lock = threading.Lock()
    templates, _ = template_choices(loaded)

    def generate(image, question, template, decoding, max_new_tokens, seed) -> Iterator[str]:
        if template not in templates:
            raise gr.Error(f"Unknown template {template!r}; choose one of {list(templates)}.")
        yield from stream_answer(
            loaded, image, question.strip(), template=templates[template], decoding=decoding,
            max_new_tokens=int(max_new_tokens), seed=int(seed), lock=lock,
        )

    def show(image):
        if image is None:
            return None
        view = model_view(loaded.processor, image)
        # Small inputs (a tiny model's 28 px) are shown enlarged by a whole factor, pixels kept.
        factor = max(1, VIEW_MIN_SIDE // max(view.size))
        return view.resize((view.width * factor, view.height * factor), resample=0)  # 0: nearest

    def answer(image, question, template, decoding, max_new_tokens, seed) -> Iterator[str]:
        """Answer a question about a skin image (streams the answer as it grows)."""
        _check_inputs(image, question, "a question")
        check_question_length(loaded, question)
        yield from generate(image, question, template, decoding, max_new_tokens, seed)

    def zeroshot(image, classes, protocol, template, decoding, max_new_tokens, seed):
        """Ask the paper's zero-shot question for the classes; return answer, prompt, parsed class."""
        _check_inputs(image, classes, "the class names")
        check_question_length(loaded, classes, "list of class names")
        names = parse_class_names(classes)
        if len(names) < 2:
            raise gr.Error(f"Give at least two class names separated by commas (got {names}).")
        prompt = zeroshot_prompt(names)
        text = ""
        for text in generate(image, prompt, template, decoding, max_new_tokens, seed):
            yield text, prompt, ""
        yield text, prompt, describe_parsed(parse_answer(text, names, protocol))

    return show, answer, zeroshot


def _settings(loaded: LoadedModel, options: DemoOptions) -> list[Any]:
    """Template, decoding, max-new-tokens and seed inputs (shared by both tabs)."""
    import gradio as gr

    templates, default = template_choices(loaded)
    with gr.Accordion("Prompt and decoding", open=False):
        template = gr.Dropdown(list(templates), value=default, label="Prompt template", elem_id="template")
        decoding = gr.Radio(
            sorted(DECODINGS), value="greedy", label="Decoding", elem_id="decoding",
            info="greedy: deterministic. paper: sampling T=0.2, top-p 0.9, 5 beams, >= 20 new "
            "tokens (beam search cannot stream: the answer appears when done).",
        )
        max_new_tokens = gr.Slider(1, 1024, value=options.max_new_tokens, step=1,
                                   label="Max new tokens", elem_id="max-new-tokens")
        seed = gr.Number(0, precision=0, label="Seed (sampled decoding)", elem_id="seed")
    return [template, decoding, max_new_tokens, seed]


def build_app(loaded: LoadedModel, options: DemoOptions, examples: Sequence[Sequence[str]] = ()) -> Any:
    """The ``gr.Blocks`` app for a loaded model; API endpoints ``/answer`` and ``/zeroshot``.

    ``examples`` are ``[image_file, question]`` pairs (see :func:`load_test_examples`).
    """
    import gradio as gr

    show, answer, zeroshot = _handlers(loaded)
    with gr.Blocks(title=f"SkinVL demo: {options.model}", analytics_enabled=False, delete_cache=DELETE_CACHE) as app:
        gr.Markdown(f"# SkinVL demo\nModel: `{options.model}`")
        gr.Markdown(NOTICE + ("\n\n" + TINY_NOTICE if options.model == "skinvl-tiny" else ""),
                    elem_id="notice")
        with gr.Row():
            with gr.Column():
                image = gr.Image(type="pil", label="Skin image", sources=["upload", "clipboard"],
                                 elem_id="image", height=320)
                seen = gr.Image(label=view_caption(loaded.processor), interactive=False, format="png",
                                elem_id="model-view", height=VIEW_MIN_SIDE + 80)
            with gr.Column():
                with gr.Tab("Ask"):
                    question = gr.Textbox(label="Question", lines=2, elem_id="question", max_length=MAX_QUESTION_CHARS,
                                          placeholder="e.g. " + COMMON_QUESTIONS[0])
                    gr.Examples([[q] for q in COMMON_QUESTIONS], inputs=[question], cache_examples=False,
                                label="Common questions of the MM-Skin test split")
                    ask = gr.Button("Ask", variant="primary", elem_id="ask")
                    answer_box = gr.Textbox(label="Answer", lines=6, interactive=False, elem_id="answer")
                with gr.Tab("Zero-shot classification"):
                    classes = gr.Textbox(DEFAULT_CLASSES, label="Class names (comma-separated)",
                                         lines=2, elem_id="classes")
                    protocol = gr.Radio(list(PARSE_PROTOCOLS), value="robust", label="Answer parsing",
                                        elem_id="protocol")
                    classify = gr.Button("Classify", variant="primary", elem_id="classify")
                    zs_answer = gr.Textbox(label="Answer", lines=3, interactive=False, elem_id="zs-answer")
                    zs_prompt = gr.Textbox(label="Prompt (the paper's)", interactive=False, elem_id="zs-prompt")
                    zs_class = gr.Textbox(label="Parsed class", interactive=False, elem_id="zs-class")
                settings = _settings(loaded, options)
        if examples:
            # Not cached: a cache would be answers written to .gradio/ that outlive the app.
            gr.Examples([list(e) for e in examples], inputs=[image, question], cache_examples=False,
                        label=f"MM-Skin test examples ({options.data})")
        image.change(show, inputs=image, outputs=seen, api_visibility="private")
        gr.on([ask.click, question.submit], answer, inputs=[image, question, *settings],
              outputs=answer_box, api_name="answer")
        classify.click(zeroshot, inputs=[image, classes, protocol, *settings],
                       outputs=[zs_answer, zs_prompt, zs_class], api_name="zeroshot")
    return app


def queued(app: Any) -> Any:
    """``app`` with its queue: CONCURRENCY questions generated at once, at most MAX_QUEUE waiting."""
    return app.queue(default_concurrency_limit=CONCURRENCY, max_size=MAX_QUEUE)


def _quiet_gradio() -> None:
    """Keep Gradio (and the Hub client) from phoning home: set before gradio is imported."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def serve(options: DemoOptions) -> int:
    """Load the examples and the model, then run the app until interrupted; returns an exit code.

    Uploads and example images live in one private folder (mode 0700, under $GRADIO_TEMP_DIR when
    set) that is deleted when the app stops.
    """
    _quiet_gradio()
    chosen = os.environ.get("GRADIO_TEMP_DIR")
    if chosen:
        Path(chosen).mkdir(parents=True, exist_ok=True)  # as Gradio would make it
    try:
        with tempfile.TemporaryDirectory(prefix="skinvl-demo-", dir=chosen) as tmp:
            # Before gradio is imported: its upload folder is read from here (the default, /tmp/gradio,
            # is shared by every user of the machine and outlives the app).
            os.environ["GRADIO_TEMP_DIR"] = str(Path(tmp) / "uploads")
            return _serve_from(options, tmp)
    finally:
        os.environ.pop("GRADIO_TEMP_DIR", None)
        if chosen is not None:
            os.environ["GRADIO_TEMP_DIR"] = chosen


def _serve_from(options: DemoOptions, tmp: str) -> int:
    """:func:`serve` with its private folder ``tmp`` made."""
    try:
        import gradio  # noqa: F401
    except ImportError:
        return _fail("skinvl demo needs Gradio: pip install 'mm-skin[demo]' (or pip install gradio).")
    examples: list[list[str]] = []
    try:
        if options.data:
            examples = load_test_examples(options.data, Path(tmp), options.examples)
    except (OSError, ValueError) as err:
        return _fail(f"--data {options.data}: cannot read its VQA test split ({first_line(err)}); "
                     "pass a folder built by `mm-skin build` (or its Hub id).")
    try:
        loaded = load_model(options)
    except ModelError as err:
        return _fail(str(err))
    app = build_app(loaded, options, examples)
    if options.share:
        print("note: --share sends the app's traffic through Gradio's share servers.", file=sys.stderr)
    if threading.current_thread() is threading.main_thread():
        # `kill` stops the app like Ctrl-C does: Gradio closes its server, the examples go.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        queued(app).launch(
            server_name=options.host, server_port=options.port, share=options.share,
            allowed_paths=[tmp], ssr_mode=False, mcp_server=False, pwa=False,
            enable_monitoring=False, show_error=True, max_file_size=MAX_UPLOAD_BYTES,
        )
    except OSError as err:
        return _fail(f"cannot listen on {options.host}:{options.port or 'default port'} "
                     f"({first_line(err)}); pass another --port or --host.")
    return ExitCode.OK


def _fail(message: str) -> int:
    print_problem(message)
    return ExitCode.BAD_INPUT


# --------------------------------------------------------------------------- Space export

def export_space(options: DemoOptions) -> int:
    """Write the Spaces-ready folder ``options.export_space`` (:mod:`skinvl.space`); returns an exit code."""
    from skinvl.space import write_space

    try:
        print(write_space(options))
    except ValueError as err:
        return _fail(str(err))
    return ExitCode.OK


def run(options: DemoOptions) -> int:
    """``skinvl demo``: export a Space when ``--export-space`` is given, else serve the app."""
    if options.export_space:
        return export_space(options)
    return serve(options)


def register_cli(subparsers) -> None:
    """Add ``skinvl demo``."""
    add_command(
        subparsers, "demo", DemoOptions, run,
        help="try a model in the browser (Gradio), or export that app as a Hugging Face Space",
        description="Launch a Gradio app: upload a skin image (or pick an MM-Skin test example "
        "with --data), ask a question and watch the answer stream; a zero-shot tab asks the "
        "paper's classification question. With --export-space DIR, write a Spaces-ready folder "
        "instead. Research model, not medical advice.",
    )


__all__ = [
    "DemoOptions", "build_app", "describe_parsed", "export_space", "load_test_examples",
    "model_view", "parse_class_names", "register_cli", "run", "serve", "stream_answer",
]
