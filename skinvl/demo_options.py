"""What ``skinvl demo`` takes (:class:`DemoOptions`) and the notice every app shows.

Apart from :mod:`skinvl.demo` so that the Space export (:mod:`skinvl.space`), which the demo's
``--export-space`` calls, can read them without importing the app back.
"""

from __future__ import annotations

import dataclasses

from skinvl.inference.decoding import DEFAULT_MAX_NEW_TOKENS
from skinvl.inference.options import ModelOptions

NOTICE = (
    "**Research model, not medical advice.** SkinVL was trained on figures from dermatology "
    "textbooks for research on vision-language models. Its answers can be wrong or made up; "
    "do not use them to diagnose, treat or reassure anyone. See a qualified clinician."
)

@dataclasses.dataclass(kw_only=True)
class DemoOptions(ModelOptions):
    """Options of ``skinvl demo``: the model (as ``skinvl eval`` loads it), the server, the export."""

    model: str = dataclasses.field(metadata={
        "help": "preset ('skinvl-tiny': random weights), SkinVL or authors' checkpoint folder, Hub id, "
        "or any AutoModelForImageTextToText checkpoint (with --export-space: the Hub id the Space loads)"})
    host: str = dataclasses.field(default="127.0.0.1", metadata={
        "help": "address to listen on (0.0.0.0 exposes the app to your network)"})
    port: int | None = dataclasses.field(default=None, metadata={
        "help": "port (default: $GRADIO_SERVER_PORT or the first free one from 7860)"})
    share: bool = dataclasses.field(default=False, metadata={
        "help": "also open a public *.gradio.live link (traffic goes through Gradio's servers)"})
    data: str | None = dataclasses.field(default=None, metadata={
        "help": "built MM-Skin folder or Hub id: its VQA test examples are offered in the app "
        "(`mm-skin build examples/mm-skin-sample --out mm-skin` builds one)"})
    examples: int = dataclasses.field(default=8, metadata={"help": "how many test examples to offer"})
    max_new_tokens: int = dataclasses.field(default=DEFAULT_MAX_NEW_TOKENS, metadata={
        "help": "initial cap on generated tokens (adjustable in the app)"})
    export_space: str | None = dataclasses.field(default=None, metadata={
        "metavar": "DIR", "help": "write a Spaces-ready folder (app.py, requirements.txt, README.md, "
        "the skinvl sources) to DIR instead of launching; publish it with `skinvl push DIR "
        "OWNER/NAME --repo-type space`"})
    overwrite: bool = dataclasses.field(default=False, metadata={
        "help": "with --export-space: replace the files it writes in a non-empty DIR"})
    space_hardware: str | None = dataclasses.field(default=None, metadata={
        "metavar": "FLAVOR", "help": "with --export-space: the Space's suggested_hardware, e.g. cpu-basic, t4-small, "
        "l4x1 (default: cpu-basic for skinvl-tiny, else l4x1); CPU hardware gets the CPU build of torch"})


__all__ = ["NOTICE", "DemoOptions"]
