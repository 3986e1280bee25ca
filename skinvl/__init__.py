"""SkinVL: the MM-Skin dermatology VLM as a first-class transformers model.

``import skinvl`` registers SkinVL with ``AutoConfig``, ``AutoModel``,
``AutoModelForImageTextToText`` and ``AutoProcessor``, and registers the authors' original
``llava_mistral`` checkpoint format, so that

    AutoModelForImageTextToText.from_pretrained("zwq803/SkinVL-PubMM", dtype=torch.bfloat16)
    AutoProcessor.from_pretrained("zwq803/SkinVL-PubMM")

load the released checkpoints in one call each. ``skinvl.load(...)`` does both at once, for SkinVL
and any other ``AutoModelForImageTextToText`` checkpoint::

    model, processor = skinvl.load("skinvl-tiny")  # random weights, for trying things out
    model, processor = skinvl.load("path/to/llava-med-folder", vision_tower="path/to/clip-vit-l-336")
    answers = skinvl.answer_batch(model, processor, images, questions)

``import skinvl`` itself loads neither torch nor transformers: the public names and submodules
resolve on first use, and the Auto-class registration happens as soon as transformers' Auto
modules are imported (see :mod:`skinvl.auto_registration`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mm_skin import __version__  # one distribution, one version

from . import auto_registration
from .lazy_exports import lazy_exports

if TYPE_CHECKING:
    from .configuration_skinvl import SkinVLConfig
    from .inference.batching import answer_batch
    from .inference.loading import load
    from .modeling_skinvl import SkinVLForConditionalGeneration, SkinVLModel
    from .processing_skinvl import SkinVLProcessor

# public name -> the module defining it (imported on first access)
_LAZY = {
    "SkinVLConfig": "skinvl.configuration_skinvl",
    "SkinVLModel": "skinvl.modeling_skinvl",
    "SkinVLForConditionalGeneration": "skinvl.modeling_skinvl",
    "SkinVLProcessor": "skinvl.processing_skinvl",
    "load": "skinvl.inference.loading",
    "answer_batch": "skinvl.inference.batching",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)


# Last, so that a registration that happens right now finds this module complete.
auto_registration.install(importing=__name__)

__all__ = [
    "SkinVLConfig",
    "SkinVLModel",
    "SkinVLForConditionalGeneration",
    "SkinVLProcessor",
    "answer_batch",
    "load",
    "__version__",
]
