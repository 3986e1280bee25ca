"""How a question becomes the text a processor receives: chat templates, by family, within limits.

The prompt is the model's own chat template applied to ONE user turn [image, question]
(``"chat"`` families), or the bare question (``"bare"`` families such as PaliGemma, whose processor
adds the image tokens): :func:`skinvl.inference.families.family_of` says which. ``template`` is a
named template of the processor (SkinVL: ``mistral_instruct``, ``vicuna_v1``) or Jinja text (from
``--chat-template FILE``).

Templates come from checkpoints and files, so they are hostile input: transformers renders them in
Jinja's sandbox, and :func:`render_limited` adds a time limit (:data:`RENDER_SECONDS`) and an
output-size limit (:data:`RENDER_MAX_CHARS`); a template over a limit, one the sandbox rejects, or
one that runs out of memory is a :class:`TemplateError` (one line, exit code 2 in the CLIs).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from skinvl.inference.families import family_of
from skinvl.inference.options import ModelError, first_line

# A chat prompt renders in microseconds; these bounds only stop hostile templates.
RENDER_SECONDS = 2.0
RENDER_MAX_CHARS = 1_000_000
TEMPLATE_FILE_MAX_BYTES = 1_000_000
_TEMPLATE_CODE = "<template>"  # the file name Jinja gives compiled templates


class TemplateError(ModelError):
    """A chat template that cannot be rendered safely; the message names it and the fix."""


class _RenderTimeout(Exception):
    """Raised inside the template's own frames when the time limit has passed."""


def render_limited(render: Callable[[], str], where: str, *, seconds: float = RENDER_SECONDS,
                   max_chars: int = RENDER_MAX_CHARS) -> str:
    """``render()`` (a Jinja rendering), stopped after ``seconds`` and refused above ``max_chars``.

    The clock is checked on every line the compiled template executes (a trace function on the
    template's frames only, so other code runs untraced); the output size bounds what the time
    limit lets through. ``where`` names the template in errors.
    """
    from jinja2 import TemplateError as JinjaError

    deadline = time.monotonic() + seconds

    def in_template(frame, event, arg):
        if time.monotonic() > deadline:
            raise _RenderTimeout
        return in_template

    def tracer(frame, event, arg):
        return in_template if frame.f_code.co_filename == _TEMPLATE_CODE else None

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        text = render()
    except _RenderTimeout:
        raise TemplateError(f"{where}: rendering took over {seconds:g} s (a runaway loop?); fix the "
                            "template or pass --chat-template FILE.") from None
    except MemoryError:
        raise TemplateError(f"{where}: rendering ran out of memory; fix the template or pass "
                            "--chat-template FILE.") from None
    except (JinjaError, RecursionError) as err:
        raise TemplateError(f"{where}: cannot be rendered ({type(err).__name__}: {first_line(err)}); fix the "
                            "template or pass --chat-template FILE.") from None
    finally:
        sys.settrace(previous)
    if isinstance(text, str) and len(text) > max_chars:
        raise TemplateError(f"{where}: the rendered prompt has {len(text):,} characters (limit {max_chars:,}); "
                            "fix the template or pass --chat-template FILE.")
    return text


def chat_prompt(processor, question: str, template: str | None = None) -> str:
    """One user turn [image, question] through the processor's chat template (or ``template``)."""
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    where = "the chat template" if template is None or "{" in template else f"the chat template {template!r}"
    return render_limited(
        lambda: processor.apply_chat_template(messages, chat_template=template, add_generation_prompt=True), where)


def family_prompt(model, processor, question: str, template: str | None = None) -> str:
    """The prompt for ``question`` as ``model``'s family wants it (see the module docstring)."""
    if family_of(model).prompt == "bare" and template is None:
        return question
    return chat_prompt(processor, question, template)


def build_prompt(processor, question: str, *, template: str | None = None) -> str:
    """Return the prompt for one question about one image, rendered with ``template``.

    ``template`` is a chat template name of the processor ("mistral_instruct", "vicuna_v1") or
    Jinja text; None uses the processor's default. For SkinVL the result is what the authors'
    ``conv.get_prompt()`` gives for a user turn ``"<image>\\n{question}"`` and an open assistant turn.
    """
    return chat_prompt(processor, question, template)


def read_template_file(path: str) -> str:
    """The Jinja text of ``--chat-template FILE`` (a regular UTF-8 file of at most 1 MB)."""
    file = Path(path)
    if not file.is_file():
        raise TemplateError(f"--chat-template {path}: no such regular file; pass a Jinja chat template file.")
    if file.stat().st_size > TEMPLATE_FILE_MAX_BYTES:
        raise TemplateError(f"--chat-template {path}: over {TEMPLATE_FILE_MAX_BYTES:,} bytes; a chat template "
                            "is a few KB.")
    try:
        return file.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise TemplateError(f"--chat-template {path}: not UTF-8 text ({err.reason}).") from None


def template_names(processor) -> list[str]:
    """The named chat templates of ``processor`` ([] when it has one unnamed template or none)."""
    templates = getattr(processor, "chat_template", None)
    return sorted(templates) if isinstance(templates, dict) else []


def default_template_name(processor) -> str:
    """The name of the processor's default template ("default" when it has no other name)."""
    templates = getattr(processor, "chat_template", None)
    templates = templates if isinstance(templates, dict) else {}
    default = templates.get("default")
    return next((k for k, v in templates.items() if k != "default" and v == default), "default")


__all__ = ["RENDER_MAX_CHARS", "RENDER_SECONDS", "TemplateError", "build_prompt", "chat_prompt",
           "default_template_name", "family_prompt", "read_template_file", "render_limited",
           "template_names"]
