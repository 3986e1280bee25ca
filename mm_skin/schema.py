"""Facts about the MM-Skin release and the features of each config (docs/dataset.md).

The release (Zeng et al., arXiv 2505.06152) ships caption.csv, VQA.csv and PNG figures cut from
15 dermatology textbooks. Everything else in :mod:`mm_skin` reads these names from here.

>>> features_for("vqa")["modality"].names
['clinical', 'dermoscopic', 'pathology']
>>> textbook_of("bk10_3_1"), normalize_modality("  Histo-Pathology ")
(10, 'histo pathology')
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datasets import Features

MODALITIES: tuple[str, ...] = ("clinical", "dermoscopic", "pathology")

#: ``bk{N}`` prefix -> textbook, numbered in the order of the authors' README.
TEXTBOOKS: dict[int, str] = {
    1: "Diagnostic Dermoscopy: The Illustrated Guide (2nd ed.)",
    2: "Skin Lymphoma: The Illustrated Guide",
    3: "Skin Disease: Diagnosis and Treatment (4th ed.)",
    4: "Imported Skin Diseases",
    5: "Shimizu's Dermatology",
    6: "Skin Cancer: Recognition and Management",
    7: "Clinical Dermatology",
    8: "Andrews' Diseases of the Skin (14th ed.)",
    9: "Diseases of the Liver and Biliary System in Children",
    10: "McKee's Pathology of the Skin (5th ed.)",
    11: "Harper's Textbook of Pediatric Dermatology",
    12: "Skin Infections",
    13: "Advances in Integrative Dermatology",
    14: "Cancer of the Skin (2nd ed.)",
    15: "Rook's Textbook of Dermatology",
}

# `skin` is the only modality string known from the release; the others are guesses at what
# the authors wrote, so accept the obvious spellings and let --modality-map add more.
# Keys are in normalize_modality() form.
MODALITY_ALIASES: dict[str, str] = {
    **dict.fromkeys(
        ["skin", "clinical", "clinic", "clinical photo", "clinical photograph", "clinical image",
         "photo", "photograph", "macroscopic", "macro", "clinical skin"], "clinical"),
    **dict.fromkeys(
        ["dermoscopy", "dermoscopic", "dermatoscopy", "dermatoscopic", "derm", "dermoscope",
         "dermatoscope", "dermoscopic image", "dermoscopy image", "epiluminescence microscopy",
         "elm"], "dermoscopic"),
    **dict.fromkeys(
        ["pathology", "pathological", "pathologic", "histology", "histological", "histologic",
         "histopathology", "histopathological", "histopathologic", "path", "patho", "he", "h&e",
         "microscopy", "microscopic", "pathology slide", "histology slide"], "pathology"),
}

ALL_CONFIGS: tuple[str, ...] = ("vqa", "clinical", "dermoscopic", "pathology", "captions", "instruct")
DEFAULT_CONFIG = "vqa"
SPLITS: tuple[str, ...] = ("train", "test")
TEST_CSV_RELATIVE = Path("Dataframe/test/vqa/MM-Skin_test.csv")
INSTRUCT_DEFAULT_RELATIVE = Path("Dataframe/Pretrain/vqa_MM.json")
#: a file at the top of a synthetic stand-in release: ``{"synthetic": true, "description": ...}``;
#: its card and report then say what the data really is (examples/mm-skin-sample has one)
SYNTHETIC_MARKER = "mm-skin-synthetic.json"

_FEATURE_NAMES = ("CAPTION_FEATURES", "VQA_FEATURES", "INSTRUCT_FEATURES")


@functools.cache
def _features() -> dict[str, Any]:
    """The three ``datasets.Features``, built on first use: importing ``datasets`` takes seconds, and
    the torch-free scorer reads only the constants of this module."""
    from datasets import ClassLabel, Features, Image, List, Value

    modality = ClassLabel(names=list(MODALITIES))
    caption = Features(
        {
            "image": Image(),
            "image_id": Value("string"),
            "caption": Value("string"),
            "modality": modality,
            "textbook_id": Value("int32"),
            "textbook": Value("string"),
            "age": Value("int32"),
            "sex": Value("string"),
        }
    )
    vqa = Features(
        {
            "image": Image(),
            "image_id": Value("string"),
            "question": Value("string"),
            "answer": Value("string"),
            "modality": modality,
            "textbook_id": Value("int32"),
            "textbook": Value("string"),
            # mm_skin.qa_columns: "<file stem>-<row>-<hash of image and question>", same on every rebuild
            "question_id": Value("string"),
            "answer_type": Value("string"),  # "closed" (yes/no question answered yes/no) or "open"
            "image_in_test": Value("bool"),  # the image is a test image (always true in `test`)
        }
    )
    instruct = Features(
        {
            "images": List(Image()),
            "messages": List(
                {"role": Value("string"), "content": List({"type": Value("string"), "text": Value("string")})}
            ),
            "source": Value("string"),
            "id": Value("string"),
        }
    )
    return {"CAPTION_FEATURES": caption, "VQA_FEATURES": vqa, "INSTRUCT_FEATURES": instruct}


def __getattr__(name: str) -> Any:
    """``CAPTION_FEATURES``, ``VQA_FEATURES`` and ``INSTRUCT_FEATURES``, built on first access."""
    if name in _FEATURE_NAMES:
        return _features()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def features_for(config: str) -> Features:
    """The `datasets` features of one config (``vqa``, a modality, ``captions``, ``instruct``)."""
    if config == "vqa":
        return _features()["VQA_FEATURES"]
    if config == "instruct":
        return _features()["INSTRUCT_FEATURES"]
    if config in MODALITIES or config == "captions":
        return _features()["CAPTION_FEATURES"]
    raise ValueError(f"unknown config {config!r}; choose one of {', '.join(ALL_CONFIGS)}")


def normalize_modality(value: str) -> str:
    """A modality string as :data:`MODALITY_ALIASES` keys it: lower case, runs of space/_/- as one space."""
    return re.sub(r"[\s_\-]+", " ", value.strip().lower())


_BK_RE = re.compile(r"^bk(\d+)[_\-.]", re.IGNORECASE)


def textbook_of(image_id: str) -> int | None:
    """Textbook number from the ``bk{N}_`` prefix of an image id (None if absent or not 1..15)."""
    m = _BK_RE.match(image_id + ".")
    if not m:
        return None
    n = int(m.group(1))
    return n if n in TEXTBOOKS else None
