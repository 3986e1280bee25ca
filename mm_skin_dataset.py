"""MM-Skin: the authors' release -> Arrow tables -> a Hub-ready Parquet folder.

The MM-Skin release (Zeng et al., arXiv 2505.06152) ships as CSV files plus a folder of PNG
figures cut from 15 dermatology textbooks. This module turns the user's own copy into

* a `datasets` builder, :class:`MMSkin` (``MMSkin(config_name="vqa", data_dir=RELEASE)``), and
* a folder of Parquet shards + dataset card (``mm-skin build RELEASE --out mm-skin``) that
  ``datasets.load_dataset("mm-skin", "vqa")`` loads with no code of ours, and that
  ``mm-skin push`` uploads to the Hub in one commit.

Both routes share one generator (:func:`iter_tables`): it reads the CSVs once, validates every
row, reads each image file once as raw bytes (a cheap structural check, no pixel decoding), and
yields pyarrow tables in the exact Arrow layout of the ``datasets`` features (``Image`` is
``struct<bytes, path>``). The build writes those tables straight to Parquet with
``pyarrow.parquet.ParquetWriter``; the images keep their ORIGINAL bytes.

Example::

    >>> from mm_skin_dataset import build
    >>> result = build("examples/mm-skin-sample", "/tmp/mm-skin", overwrite=True)  # doctest: +SKIP
    >>> import datasets
    >>> datasets.load_dataset("/tmp/mm-skin", "vqa", split="test")[0]["answer"]  # doctest: +SKIP

This module depends only on datasets / pyarrow / pillow (+ huggingface_hub, jinja2, matplotlib
for cards and pushing); it never imports torch or skinvl.
"""

from __future__ import annotations

import argparse
import collections
import csv
import dataclasses
import hashlib
import json
import os
import re
import shutil
import socket
import struct
import sys
import threading
import time
import urllib.parse
import zlib
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
from datasets import ClassLabel, Features, Image, List, Value

__all__ = [
    "MMSkin",
    "MMSkinConfig",
    "MODALITIES",
    "TEXTBOOKS",
    "BuildResult",
    "ReleaseError",
    "StrictError",
    "PushError",
    "build",
    "iter_tables",
    "load_release",
    "main",
    "parse_age_sex",
    "push_folder",
    "validate_folder",
]

VERSION = "0.1.0"
# The card templates: cards/ in a source checkout (and editable installs); a wheel installs the
# same folder beside this module as mm_skin_cards/ (pyproject.toml's package-dir).
CARDS_DIR = next(
    (d for d in (Path(__file__).resolve().parent / n for n in ("cards", "mm_skin_cards")) if d.is_dir()),
    Path(__file__).resolve().parent / "cards",
)
CARD_TEMPLATE = CARDS_DIR / "dataset_card.md.jinja"

# --------------------------------------------------------------------------------------------
# Facts about the release (DESIGN.md 1.1)
# --------------------------------------------------------------------------------------------

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

CAPTION_CONFIGS: tuple[str, ...] = MODALITIES
ALL_CONFIGS: tuple[str, ...] = ("vqa", "clinical", "dermoscopic", "pathology", "captions", "instruct")
DEFAULT_CONFIG = "vqa"
TEST_CSV_RELATIVE = Path("Dataframe/test/vqa/MM-Skin_test.csv")
INSTRUCT_DEFAULT_RELATIVE = Path("Dataframe/Pretrain/vqa_MM.json")

_MODALITY_FEATURE = ClassLabel(names=list(MODALITIES))
CAPTION_FEATURES = Features(
    {
        "image": Image(),
        "image_id": Value("string"),
        "caption": Value("string"),
        "modality": _MODALITY_FEATURE,
        "textbook_id": Value("int32"),
        "textbook": Value("string"),
        "age": Value("int32"),
        "sex": Value("string"),
    }
)
VQA_FEATURES = Features(
    {
        "image": Image(),
        "image_id": Value("string"),
        "question": Value("string"),
        "answer": Value("string"),
        "modality": _MODALITY_FEATURE,
        "textbook_id": Value("int32"),
        "textbook": Value("string"),
    }
)
INSTRUCT_FEATURES = Features(
    {
        "images": List(Image()),
        "messages": List(
            {"role": Value("string"), "content": List({"type": Value("string"), "text": Value("string")})}
        ),
        "source": Value("string"),
        "id": Value("string"),
    }
)


def features_for(config: str) -> Features:
    """The `datasets` features of one config (``vqa``, a modality, ``captions``, ``instruct``)."""
    if config == "vqa":
        return VQA_FEATURES
    if config == "instruct":
        return INSTRUCT_FEATURES
    if config in CAPTION_CONFIGS or config == "captions":
        return CAPTION_FEATURES
    raise ValueError(f"unknown config {config!r}; choose one of {', '.join(ALL_CONFIGS)}")


# --------------------------------------------------------------------------------------------
# Errors and the build report
# --------------------------------------------------------------------------------------------


class ReleaseError(Exception):
    """The release cannot be built as given (missing file/column, unmapped modality...)."""


class StrictError(ReleaseError):
    """``--strict`` was given and some rows would not be written."""


class PushError(Exception):
    """A push was refused (invalid folder, no token, no network, Hub error)."""


@dataclasses.dataclass
class Issue:
    """One input row that was not written (``skipped``) or was written with a caveat."""

    file: str
    row: int | None
    column: str | None
    value: str | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class FileCounts:
    role: str
    sha256: str
    size: int
    rows_read: int = 0
    rows_written: int = 0
    rows_skipped: int = 0
    rows_in_test_split: int = 0  # VQA.csv rows that are the official test rows (written from the test CSV)


class BuildReport:
    """Everything a build read, wrote and left out; serialised to ``build_report.json``."""

    def __init__(self) -> None:
        self.files: dict[str, FileCounts] = {}
        self.skipped: list[Issue] = []
        self.warnings: list[Issue] = []
        self.notes: list[str] = []
        self.modality_values: dict[str, dict[str, Any]] = {}
        self.written: dict[str, dict[str, int]] = {}
        self.images: dict[str, int] = {"referenced": 0, "written": 0, "bad": 0, "bytes": 0}

    def add_file(self, name: str, role: str, path: Path) -> None:
        self.files[name] = FileCounts(role=role, sha256=_sha256_file(path), size=path.stat().st_size)

    def skip(self, file: str, row: int | None, column: str | None, value: Any, reason: str) -> None:
        self.skipped.append(Issue(file, row, column, None if value is None else str(value), reason))
        if file in self.files:
            self.files[file].rows_skipped += 1

    def warn(self, file: str, row: int | None, column: str | None, value: Any, reason: str) -> None:
        self.warnings.append(Issue(file, row, column, None if value is None else str(value), reason))

    def count_written(self, config: str, split: str, n: int) -> None:
        per = self.written.setdefault(config, {})
        per[split] = per.get(split, 0) + n

    def as_dict(self) -> dict[str, Any]:
        reasons = collections.Counter(_reason_kind(i.reason) for i in self.skipped)
        return {
            "mm_skin_dataset_version": VERSION,
            "notes": self.notes,
            "files": {k: dataclasses.asdict(v) for k, v in self.files.items()},
            "written": self.written,
            "images": self.images,
            "modality_values": self.modality_values,
            "skipped_by_reason": dict(sorted(reasons.items())),
            "skipped": [i.as_dict() for i in self.skipped],
            "warnings": [i.as_dict() for i in self.warnings],
        }

    def summary(self) -> str:
        """A few lines for stderr."""
        lines = []
        for name, c in self.files.items():
            extra = f", {c.rows_in_test_split} are test rows" if c.rows_in_test_split else ""
            lines.append(
                f"  {name}: {c.rows_read} rows read, {c.rows_written} written, {c.rows_skipped} skipped{extra}"
            )
        for cfg, splits in self.written.items():
            lines.append(f"  {cfg}: " + ", ".join(f"{s}={n}" for s, n in sorted(splits.items())))
        if self.skipped:
            reasons = collections.Counter(_reason_kind(i.reason) for i in self.skipped)
            lines.append(f"  {len(self.skipped)} rows NOT written: " + "; ".join(f"{r} x{n}" for r, n in reasons.most_common()))
            for issue in self.skipped[:5]:
                lines.append(f"    {issue.file} row {issue.row}: {issue.reason} ({issue.column}={_short(issue.value)})")
            if len(self.skipped) > 5:
                lines.append(f"    ... {len(self.skipped) - 5} more in build_report.json")
        if self.warnings:
            reasons = collections.Counter(_reason_kind(i.reason) for i in self.warnings)
            lines.append(f"  {len(self.warnings)} warnings (rows written): " + "; ".join(f"{r} x{n}" for r, n in reasons.most_common()))
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)


def _reason_kind(reason: str) -> str:
    # "duplicate of row 12" and "duplicate of row 40" are one kind of problem.
    return re.sub(r"\d+", "N", reason.split(":")[0])


def _short(value: Any, n: int = 60) -> str:
    s = repr(value)
    return s if len(s) <= n else s[: n - 3] + "..."


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# Parsing helpers: columns, modality, textbook, demographics
# --------------------------------------------------------------------------------------------


def _norm_col(name: str) -> str:
    """Column names are matched ignoring case, spaces, underscores and hyphens (and a BOM)."""
    return re.sub(r"[\s_\-]+", "", name.replace("\ufeff", "")).lower()


# canonical column -> accepted spellings (after _norm_col); first found wins
_COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "image": ("image", "imagepath", "img", "imgpath"),
    "caption": ("cleanedcaption", "caption"),
    "modality": ("modality",),
    "question": ("question",),
    "answer": ("answer",),
    "age": ("age",),
    "sex": ("sex", "gender"),
}


def _read_csv(path: Path, display: str, required: Sequence[str], optional: Sequence[str] = ()) -> tuple[dict[str, int], list[list[str]]]:
    """Read a CSV (UTF-8, optional BOM) and locate its columns; raise naming what was found."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            rows = list(csv.reader(f))
    except UnicodeDecodeError as e:
        raise ReleaseError(f"{display}: not UTF-8 text ({e}); re-save the file as UTF-8") from e
    except csv.Error as e:
        raise ReleaseError(f"{display}: not a readable CSV file ({e})") from e
    if not rows:
        raise ReleaseError(f"{display}: the file is empty (expected a header row with {', '.join(required)})")
    header = rows[0]
    normalized = [_norm_col(h) for h in header]
    found: dict[str, int] = {}
    for canonical in (*required, *optional):
        for alias in _COLUMN_ALIASES[canonical]:
            if alias in normalized:
                found[canonical] = normalized.index(alias)
                break
    missing = [c for c in required if c not in found]
    if missing:
        raise ReleaseError(
            f"{display}: missing column(s) {', '.join(repr(m) for m in missing)}; "
            f"columns found: {', '.join(repr(h) for h in header)}. "
            f"Accepted spellings: "
            + "; ".join(f"{m}: {', '.join(_COLUMN_ALIASES[m])}" for m in missing)
            + " (case, spaces, '_' and '-' are ignored)."
        )
    return found, rows[1:]


def _norm_modality(value: str) -> str:
    return re.sub(r"[\s_\-]+", " ", value.strip().lower())


def parse_modality_map(items: Iterable[str]) -> dict[str, str]:
    """Parse ``VALUE=MODALITY`` pairs (``--modality-map``) into a normalised lookup."""
    mapping: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise ReleaseError(f"--modality-map {item!r}: expected VALUE=MODALITY, e.g. 'derm img=dermoscopic'")
        value, target = item.rsplit("=", 1)
        target_norm = _norm_modality(target)
        canonical = target_norm if target_norm in MODALITIES else MODALITY_ALIASES.get(target_norm)
        if canonical is None:
            raise ReleaseError(
                f"--modality-map {item!r}: {target!r} is not a modality; use one of {', '.join(MODALITIES)}"
            )
        mapping[_norm_modality(value)] = canonical
    return mapping


_BK_RE = re.compile(r"^bk(\d+)[_\-.]", re.IGNORECASE)


def textbook_of(image_id: str) -> int | None:
    """Textbook number from the ``bk{N}_`` prefix of an image id (None if absent or not 1..15)."""
    m = _BK_RE.match(image_id + ".")
    if not m:
        return None
    n = int(m.group(1))
    return n if n in TEXTBOOKS else None


_NUMBER_WORDS = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen".split()
    )
}
_NUMBER_WORDS.update({w: 10 * i for i, w in enumerate("_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()) if w != "_"})
_NUM = r"(\d{1,3}|(?:twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety)(?:[\s\-](?:one|two|three|four|five|six|seven|eight|nine))?|" + "|".join(sorted(_NUMBER_WORDS, key=len, reverse=True)) + r")"
_AGE_YEARS = [
    re.compile(_NUM + r"[\s\-]*(?:year|yr)s?[\s\-]*old", re.I),  # 45-year-old, 45 years old
    re.compile(_NUM + r"[\s\-]*(?:year|yr)s?\s+of\s+age", re.I),  # 45 years of age
    re.compile(r"\baged?\s+" + _NUM + r"\b(?!\s*(?:month|week|day))", re.I),  # aged 45, age 45
    re.compile(r"\b" + _NUM + r"[\s\-]*(?:y/o|yo)\b", re.I),  # 45 y/o, 45yo
]
_AGE_UNDER_ONE = re.compile(
    r"\b(?:" + _NUM + r"[\s\-]*(?:month|week|day)s?[\s\-]*old|new[\s\-]?borns?|neonat(?:e|es|al)|infants?|bab(?:y|ies))\b",
    re.I,
)
_MALE = re.compile(r"\b(?:man|boy|male|gentleman|father|son|brother|husband)\b", re.I)
_FEMALE = re.compile(r"\b(?:woman|girl|female|lady|mother|daughter|sister|wife|pregnan(?:t|cy))\b", re.I)
_MALE_PRONOUN = re.compile(r"\b(?:he|his|him)\b", re.I)
_FEMALE_PRONOUN = re.compile(r"\b(?:she|her|hers)\b", re.I)
# "male pattern baldness" is a diagnosis, not the patient's sex
_NOT_SEX = re.compile(r"\b(?:fe)?male[\s\-]+pattern\b", re.I)


def _number(token: str) -> int | None:
    token = token.lower().replace("-", " ")
    if token.isdigit():
        return int(token)
    parts = token.split()
    if all(p in _NUMBER_WORDS for p in parts):
        return sum(_NUMBER_WORDS[p] for p in parts)
    return None


def parse_age_sex(text: str) -> tuple[int | None, str | None]:
    """Age (whole years) and sex ("male"/"female") of the patient named in a caption, or None.

    Rules (MM-Skin-D extracts demographics from caption text; these are ours, documented):

    * age: the first of "45-year-old", "45 years old", "45 years of age", "aged 45", "age 45",
      "45 y/o" (digits or words up to ninety-nine; values above 120 are ignored);
      otherwise "N-month/week/day-old", "newborn", "neonate", "infant", "baby" give 0.
      Decades ("in his 40s") and vague words ("child", "elderly") give None.
    * sex: nouns first - man/boy/male/gentleman/father/son/brother/husband -> "male",
      woman/girl/female/lady/mother/daughter/sister/wife/pregnant -> "female"; when no noun is
      present the pronouns he/his/him vs she/her decide. Both sexes named (two patients) -> None.
      Plurals (men/women) are ignored; "male/female pattern" (a diagnosis) is ignored.

    >>> parse_age_sex("A 45-year-old man with a pearly papule on the nose.")
    (45, 'male')
    >>> parse_age_sex("Infant girl with a haemangioma.")
    (0, 'female')
    >>> parse_age_sex("Histology of a basal cell carcinoma.")
    (None, None)
    """
    age: int | None = None
    for pattern in _AGE_YEARS:
        m = pattern.search(text)
        if m:
            n = _number(m.group(1))
            if n is not None and n <= 120:
                age = n
                break
    if age is None and _AGE_UNDER_ONE.search(text):
        age = 0
    cleaned = _NOT_SEX.sub(" ", text)
    male, female = bool(_MALE.search(cleaned)), bool(_FEMALE.search(cleaned))
    if not male and not female:
        male, female = bool(_MALE_PRONOUN.search(cleaned)), bool(_FEMALE_PRONOUN.search(cleaned))
    sex = "male" if male and not female else "female" if female and not male else None
    return age, sex


def _parse_age_column(value: str) -> int | None:
    m = re.match(r"^\s*(\d{1,3})(?:\.0+)?\s*(?:y|yr|yrs|years?)?\s*$", value, re.I)
    if m and int(m.group(1)) <= 120:
        return int(m.group(1))
    return None


def _parse_sex_column(value: str) -> str | None:
    v = value.strip().lower()
    if v in {"m", "male", "man", "boy"}:
        return "male"
    if v in {"f", "female", "woman", "girl"}:
        return "female"
    return None


def _image_key(value: str) -> str:
    """Normalised release-relative path: 'dataset/bk1_2.png' (a bare file name gets 'dataset/')."""
    v = value.strip().replace("\\", "/")
    while v.startswith("./"):
        v = v[2:]
    if "/" not in v:
        v = "dataset/" + v
    return v


# --------------------------------------------------------------------------------------------
# The release plan: every row validated, grouped by image, nothing read from the images yet
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class CaptionRow:
    file: str
    row: int
    caption: str
    modality: int
    age: int | None
    sex: str | None


@dataclasses.dataclass
class QARow:
    file: str
    row: int
    question: str
    answer: str


@dataclasses.dataclass
class ImageEntry:
    """One image file and every row that needs it, per split."""

    key: str
    path: Path
    image_id: str
    textbook_id: int | None
    split: str  # "test" when the official test CSV names the image
    captions: list[CaptionRow] = dataclasses.field(default_factory=list)
    qa: dict[str, list[QARow]] = dataclasses.field(default_factory=dict)

    @property
    def modality(self) -> int | None:
        return self.captions[0].modality if self.captions else None

    def rows(self) -> Iterator[tuple[str, int]]:
        for c in self.captions:
            yield c.file, c.row
        for rows in self.qa.values():
            for r in rows:
                yield r.file, r.row


@dataclasses.dataclass
class InstructFile:
    path: Path
    display: str


@dataclasses.dataclass
class ReleasePlan:
    """A parsed, validated release: what to write, in what order, and the report so far."""

    root: Path
    source: Path
    images: list[ImageEntry]
    has_test: bool
    instruct_files: list[InstructFile]
    report: BuildReport

    def splits(self, config: str) -> list[str]:
        """The splits a config has rows for (caption/vqa configs: train and, with a test CSV, test)."""
        if config == "instruct":
            return ["train"] if self.instruct_files else []
        splits = ["train", "test"] if self.has_test else ["train"]
        present = set()
        for e in self.images:
            if config == "vqa":
                present.update(s for s, rows in e.qa.items() if rows)
            elif e.captions and (config == "captions" or MODALITIES[e.modality] == config):
                present.add(e.split)
        return [s for s in splits if s in present]


def _display(path: Path, source: Path) -> str:
    try:
        return path.resolve().relative_to(source.resolve()).as_posix()
    except ValueError:
        return path.name


def locate_release(source: str | os.PathLike[str], test_csv: str | os.PathLike[str] | None = None) -> dict[str, Path | None]:
    """Find caption.csv / VQA.csv (at SOURCE or SOURCE/MM-SkinQA) and the official test CSV."""
    src = Path(source)
    if not src.is_dir():
        raise ReleaseError(f"{src}: not a directory (expected the MM-Skin release: caption.csv, VQA.csv, dataset/)")
    root = None
    for candidate in (src, src / "MM-SkinQA"):
        if (candidate / "caption.csv").is_file() or (candidate / "VQA.csv").is_file():
            root = candidate
            break
    if root is None:
        raise ReleaseError(
            f"{src}: no caption.csv or VQA.csv here or in {src / 'MM-SkinQA'}; point SOURCE at the unpacked release"
        )
    files: dict[str, Path | None] = {"root": root, "caption": None, "vqa": None, "test": None}
    for role, name in (("caption", "caption.csv"), ("vqa", "VQA.csv")):
        path = root / name
        if not path.is_file():
            raise ReleaseError(f"{path}: missing (the release ships caption.csv and VQA.csv side by side)")
        files[role] = path
    if test_csv is not None:
        path = Path(test_csv)
        if not path.is_file():
            raise ReleaseError(f"--test-csv {path}: no such file")
        files["test"] = path
    else:
        files["test"] = _find_test_csv((src, root.parent, root))
    return files


def _find_test_csv(bases: Iterable[Path]) -> Path | None:
    """The official test CSV (``Dataframe/test/vqa/MM-Skin_test.csv``) under the first base that
    has one; failing that, the only ``*_test.csv`` in such a ``Dataframe/test/vqa/`` folder (a
    renamed copy, or the synthetic sample's). Several candidates are ambiguous: an error."""
    for base in bases:
        if (base / TEST_CSV_RELATIVE).is_file():
            return base / TEST_CSV_RELATIVE
    for base in bases:
        folder = base / TEST_CSV_RELATIVE.parent
        found = sorted(folder.glob("*_test.csv")) if folder.is_dir() else []
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise ReleaseError(
                f"{folder}: several test CSVs ({', '.join(f.name for f in found)}) and none named "
                f"{TEST_CSV_RELATIVE.name}; choose one with --test-csv"
            )
    return None


QA_FIELDS = ("image", "question", "answer")


def _filled_rows(
    report: BuildReport, name: str, cols: dict[str, int], rows: list[list[str]], fields: Sequence[str]
) -> Iterator[tuple[int, list[str], tuple[str, ...]]]:
    """Yield ``(row number, row, values of fields)`` for the rows of one CSV whose ``fields`` are
    all filled; count every row read and report each blank line or empty field as not written."""
    for i, row in enumerate(rows):
        rowno = i + 2  # spreadsheet numbering: the header is row 1
        report.files[name].rows_read += 1
        if not any(cell.strip() for cell in row):
            report.skip(name, rowno, None, "", "blank line")
            continue
        values = tuple(_cell(row, cols[c]) for c in fields)
        empty = next((c for c, v in zip(fields, values, strict=True) if not v), None)
        if empty is not None:
            report.skip(name, rowno, empty, "", "empty image path" if empty == "image" else f"empty {empty}")
            continue
        yield rowno, row, values


def load_release(
    source: str | os.PathLike[str],
    *,
    test_csv: str | os.PathLike[str] | None = None,
    instruct_json: Sequence[str | os.PathLike[str]] | None = None,
    modality_map: dict[str, str] | None = None,
) -> ReleasePlan:
    """Read and validate the release's CSV files into a :class:`ReleasePlan` (no image is read).

    Raises :class:`ReleaseError` for problems that stop the build (missing file or column,
    unmapped modality values); row-level problems go into ``plan.report``.
    """
    files = locate_release(source, test_csv)
    src = Path(source)
    root = files["root"]
    assert root is not None
    report = BuildReport()
    entries: dict[str, ImageEntry] = {}

    def entry(key: str, split: str) -> ImageEntry:
        e = entries.get(key)
        if e is None:
            image_id = Path(key).stem
            path = root / key
            e = ImageEntry(key=key, path=path, image_id=image_id, textbook_id=textbook_of(image_id), split=split)
            entries[key] = e
        return e

    # 1. the official test split: its rows ARE the test split, in file order, duplicates kept
    test_keys: set[str] = set()
    test_rows: set[tuple[str, str, str]] = set()
    if files["test"] is not None:
        tpath = files["test"]
        tname = _display(tpath, src)
        report.add_file(tname, "official VQA test split", tpath)
        cols, rows = _read_csv(tpath, tname, QA_FIELDS)
        seen: dict[tuple[str, str, str], int] = {}
        for rowno, _, (image, question, answer) in _filled_rows(report, tname, cols, rows, QA_FIELDS):
            key = _image_key(image)
            ident = (key, question, answer)
            if ident in seen:
                # The official benchmark has exact repeats (3 in MM-Skin_test.csv); the paper's
                # numbers include them, so they stay in the test split, flagged.
                report.warn(tname, rowno, "question", question, f"duplicate of row {seen[ident]} (kept: official test split)")
            else:
                seen[ident] = rowno
            test_keys.add(key)
            test_rows.add(ident)
            entry(key, "test").qa.setdefault("test", []).append(QARow(tname, rowno, question, answer))
        report.notes.append(f"test split = the official test CSV {tname}; train = every other row")
    else:
        report.notes.append("no official test CSV found (pass --test-csv): every row is in the train split")

    # 2. captions
    cpath = files["caption"]
    assert cpath is not None
    cname = _display(cpath, src)
    report.add_file(cname, "captions (MM-Skin-C, MM-Skin-D)", cpath)
    cols, rows = _read_csv(cpath, cname, ["image", "caption", "modality"], ["age", "sex"])
    user_map = dict(modality_map or {})
    value_counts: collections.Counter[str] = collections.Counter()
    raw_values: dict[str, str] = {}
    for row in rows:
        raw = _cell(row, cols["modality"])
        if raw:
            norm = _norm_modality(raw)
            value_counts[norm] += 1
            raw_values.setdefault(norm, raw)
    unmapped = {v: n for v, n in value_counts.items() if v not in user_map and v not in MODALITY_ALIASES}
    if unmapped:
        listing = "\n".join(f"  {raw_values[v]!r}: {n} rows" for v, n in sorted(unmapped.items(), key=lambda kv: -kv[1]))
        example = next(iter(unmapped))
        raise ReleaseError(
            f"{cname}: modality value(s) not recognised:\n{listing}\n"
            f"Map each with --modality-map VALUE=MODALITY (MODALITY: {', '.join(MODALITIES)}), "
            f"e.g. --modality-map '{raw_values[example]}=dermoscopic'."
        )
    for v, n in value_counts.items():
        target = user_map.get(v) or MODALITY_ALIASES[v]
        report.modality_values[raw_values[v]] = {"modality": target, "rows": n}
    seen_caption: dict[tuple[str, str, int], int] = {}
    for rowno, row, (image, caption, raw_mod) in _filled_rows(report, cname, cols, rows, ("image", "caption", "modality")):
        norm = _norm_modality(raw_mod)
        modality = MODALITIES.index(user_map.get(norm) or MODALITY_ALIASES[norm])
        key = _image_key(image)
        ident = (key, caption, modality)
        if ident in seen_caption:
            report.skip(cname, rowno, "image", image, f"duplicate of row {seen_caption[ident]}")
            continue
        seen_caption[ident] = rowno
        age, sex = parse_age_sex(caption)
        if "age" in cols and _cell(row, cols["age"]):
            age = _parse_age_column(_cell(row, cols["age"]))
        if "sex" in cols and _cell(row, cols["sex"]):
            sex = _parse_sex_column(_cell(row, cols["sex"]))
        e = entry(key, "test" if key in test_keys else "train")
        if e.captions and e.captions[0].modality != modality:
            report.warn(cname, rowno, "modality", raw_mod, f"image already has modality {MODALITIES[e.captions[0].modality]} (row {e.captions[0].row})")
        e.captions.append(CaptionRow(cname, rowno, caption, modality, age, sex))

    # 3. VQA.csv: rows that are official test rows were written from the test CSV
    vpath = files["vqa"]
    assert vpath is not None
    vname = _display(vpath, src)
    report.add_file(vname, "VQA pairs (MM-Skin-O)", vpath)
    cols, rows = _read_csv(vpath, vname, QA_FIELDS)
    seen_qa: dict[tuple[str, str, str], int] = {}
    for rowno, _, (image, question, answer) in _filled_rows(report, vname, cols, rows, QA_FIELDS):
        key = _image_key(image)
        ident = (key, question, answer)
        if ident in test_rows:  # written from the test CSV (repeats included, as there)
            report.files[vname].rows_in_test_split += 1
            continue
        if ident in seen_qa:
            report.skip(vname, rowno, "question", question, f"duplicate of row {seen_qa[ident]}")
            continue
        seen_qa[ident] = rowno
        entry(key, "test" if key in test_keys else "train").qa.setdefault("train", []).append(QARow(vname, rowno, question, answer))

    # 4. per-image caveats that keep the row
    for e in entries.values():
        if e.textbook_id is None:
            file, row = next(e.rows())
            report.warn(file, row, "image", e.key, "unknown textbook: the file name does not start with bk1_..bk15_ (textbook_id left empty)")
        if e.qa and not e.captions:
            file, row = next(e.rows())
            report.warn(file, row, "image", e.key, "no caption.csv row for this image: modality left empty")
    if test_keys:
        overlap = sum(1 for e in entries.values() if e.key in test_keys and e.qa.get("train"))
        if overlap:
            report.notes.append(
                f"{overlap} test images also have (different) QA pairs in the train split: the official split is by QA pair, not by image"
            )

    # 5. instruction-tuning JSON (LLaVA format)
    instruct_files: list[InstructFile] = []
    if instruct_json is None:
        for base in (src, root.parent):
            if (base / INSTRUCT_DEFAULT_RELATIVE).is_file():
                instruct_json = [base / INSTRUCT_DEFAULT_RELATIVE]
                report.notes.append(f"instruct config from {_display(base / INSTRUCT_DEFAULT_RELATIVE, src)} (found in the release)")
                break
    for p in instruct_json or []:
        path = Path(p)
        if not path.is_file():
            raise ReleaseError(f"--instruct-json {path}: no such file")
        name = _display(path, src)
        report.add_file(name, "LLaVA instruction data (instruct config)", path)
        instruct_files.append(InstructFile(path, name))

    # Order: official test images first (in test CSV order), then caption.csv, then VQA.csv.
    images = list(entries.values())
    report.images["referenced"] = len(images)
    return ReleasePlan(root=root, source=src, images=images, has_test=files["test"] is not None,
                       instruct_files=instruct_files, report=report)


def _cell(row: list[str], index: int) -> str:
    return row[index].strip() if index < len(row) else ""


# --------------------------------------------------------------------------------------------
# Reading images: raw bytes + a structural check, in a bounded thread pool, order kept
# --------------------------------------------------------------------------------------------


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _check_png(data: bytes | pa.Buffer) -> str | None:
    """Walk a PNG's chunks and check every CRC, as ``PIL.Image.verify()`` does, without copies.

    PIL's verify reads each chunk into a fresh ``bytes`` object before its CRC (a copy of the
    whole file in Python); here ``zlib.crc32`` runs on zero-copy slices of the buffer (and
    releases the GIL, so the reader threads overlap). Same checks: IHDR first, every chunk
    complete with a correct CRC, image data present, IEND reached (bytes after IEND are
    ignored, as PIL does).
    """
    view = memoryview(data).cast("B")
    size = len(view)
    pos = len(_PNG_SIGNATURE)
    seen_idat = False
    while True:
        if pos + 12 > size:
            return f"undecodable image: truncated PNG (file ends at byte {size} before the IEND chunk)"
        length, ctype = struct.unpack_from(">I4s", view, pos)
        end = pos + 12 + length
        name = ctype.decode("latin-1")
        if end > size:
            return f"undecodable image: truncated PNG ({name!r} chunk at byte {pos} runs past the end of the file, {size} bytes)"
        if pos == len(_PNG_SIGNATURE) and (ctype != b"IHDR" or length != 13):
            return f"undecodable image: broken PNG (first chunk is {name!r}, expected a 13-byte 'IHDR')"
        if zlib.crc32(view[pos + 4 : end - 4]) != struct.unpack_from(">I", view, end - 4)[0]:
            return f"undecodable image: broken PNG (bad checksum in {name!r} chunk at byte {pos})"
        if ctype == b"IDAT":
            seen_idat = True
        elif ctype == b"IEND":
            return None if seen_idat else "undecodable image: broken PNG (no IDAT image data before IEND)"
        pos = end


def check_image_bytes(data: bytes | pa.Buffer) -> str | None:
    """Why these bytes are not a usable image, or None. No pixel decoding.

    PNG (the release's format) gets :func:`_check_png`: every chunk and its CRC up to IEND,
    which catches empty, truncated and corrupt files at a fraction of the cost of decoding.
    Other formats go through PIL: it identifies the format from the header and ``verify()``
    walks what the format's plugin knows how to check.
    """
    if len(data) == 0:
        return "empty image file"
    if memoryview(data).cast("B")[: len(_PNG_SIGNATURE)] == _PNG_SIGNATURE:
        return _check_png(data)
    from PIL import Image as PILImage  # local: PIL plugin registration is only needed here

    try:
        with PILImage.open(pa.BufferReader(data)) as img:
            img.verify()
    except PILImage.UnidentifiedImageError:
        return "undecodable image: not a recognised image format"
    except Exception as e:  # PIL raises many types (SyntaxError, OSError, struct.error...)
        detail = re.sub(r" at 0x[0-9a-f]+", "", str(e))  # keep the report reproducible
        return f"undecodable image: {type(e).__name__}: {detail}"
    return None


def _read_one(path: Path) -> tuple[pa.Buffer | None, str | None]:
    # Read straight into a buffer of Arrow's memory pool: the pool recycles its pages, where a
    # fresh `bytes` per image costs page faults on every read (5x slower here, bench/build.py).
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            buf = pa.allocate_buffer(size)
            n = f.readinto(memoryview(buf).cast("B")) if size else 0
    except FileNotFoundError:
        return None, "missing image file"
    except OSError as e:
        return None, f"unreadable image file: {e}"
    if n != size:
        return None, f"unreadable image file: read {n} of {size} bytes (file changed during the build?)"
    problem = check_image_bytes(buf)
    return (None, problem) if problem else (buf, None)


def _read_chunk(paths: list[Path]) -> list[tuple[pa.Buffer | None, str | None]]:
    return [_read_one(p) for p in paths]


def read_images_ordered(paths: Sequence[Path], num_proc: int = 1, chunk_size: int = 16) -> Iterator[tuple[pa.Buffer | None, str | None]]:
    """Yield (pyarrow.Buffer, None) or (None, reason) for each path, in order.

    ``num_proc`` threads read and check chunks of files (file reads and zlib CRCs release the
    GIL); at most ``2 * num_proc`` chunks are in flight so memory stays bounded.
    """
    chunks = [list(paths[i : i + chunk_size]) for i in range(0, len(paths), chunk_size)]
    if num_proc <= 1:
        for chunk in chunks:
            yield from _read_chunk(chunk)
        return
    with ThreadPoolExecutor(max_workers=num_proc, thread_name_prefix="mm-skin-read") as pool:
        pending: collections.deque[Future[list[tuple[pa.Buffer | None, str | None]]]] = collections.deque()
        it = iter(chunks)
        for chunk in it:
            pending.append(pool.submit(_read_chunk, chunk))
            if len(pending) >= 2 * num_proc:
                break
        while pending:
            results = pending.popleft().result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append(pool.submit(_read_chunk, nxt))
            yield from results


# --------------------------------------------------------------------------------------------
# The one generator: (config, split, pyarrow.Table) batches
# --------------------------------------------------------------------------------------------


def binary_array(values: Sequence[bytes | pa.Buffer]) -> pa.Array:
    """A pyarrow binary array holding ``values`` with one memcpy each, in Arrow's memory pool.

    ``pa.array(list_of_bytes)`` and ``b"".join`` allocate fresh memory for every batch (page
    faults: several times slower on images, see bench/build.py); the pool recycles pages.
    """
    offsets = [0] * (len(values) + 1)
    total = 0
    for i, v in enumerate(values):
        total += len(v)
        offsets[i + 1] = total
    if total >= 2**31:
        raise ValueError("binary batch over 2 GiB; lower the row-group size")
    data = pa.allocate_buffer(total)
    view = memoryview(data).cast("B") if total else None
    for v, start, end in zip(values, offsets, offsets[1:], strict=False):
        if end > start:
            view[start:end] = memoryview(v).cast("B")
    return pa.Array.from_buffers(pa.binary(), len(values), [None, pa.array(offsets, pa.int32()).buffers()[1], data])


class _Batch:
    """Column buffers of one (config, split) until they reach the row-group byte target."""

    def __init__(self, config: str) -> None:
        self.config = config
        self.cols: dict[str, list[Any]] = {name: [] for name in features_for(config)}
        self.nbytes = 0
        self.rows = 0

    def add(self, row: dict[str, Any], nbytes: int) -> None:
        for k, v in row.items():
            self.cols[k].append(v)
        self.nbytes += nbytes
        self.rows += 1

    def to_table(self) -> pa.Table:
        schema = features_for(self.config).arrow_schema
        arrays = []
        for field in schema:
            values = self.cols[field.name]
            if field.name == "image":
                arrays.append(
                    pa.StructArray.from_arrays(
                        [binary_array([v[0] for v in values]), pa.array([v[1] for v in values], pa.string())],
                        fields=list(field.type),
                    )
                )
            else:
                arrays.append(pa.array(values, field.type))
        return pa.Table.from_arrays(arrays, schema=schema)


ROW_GROUP_BYTES = 32 << 20  # image bytes per row group: bounded memory, dictionary-dedup window
# Image bytes held in unfinished row groups over ALL (config, split) outputs together: past it the
# fullest one is flushed early, so memory stays flat however many outputs fill in parallel.
PENDING_BYTES = 64 << 20


def iter_tables(
    plan: ReleasePlan,
    targets: Iterable[tuple[str, str]] | None = None,
    *,
    num_proc: int = 1,
    row_group_bytes: int = ROW_GROUP_BYTES,
    pending_bytes: int = PENDING_BYTES,
    progress: bool = False,
) -> Iterator[tuple[str, str, pa.Table]]:
    """Yield ``(config, split, table)`` for the caption, modality and vqa configs in ONE pass.

    ``targets`` restricts the output to some (config, split) pairs (default: every modality
    config, ``captions`` is not generated here because it is the union of the three modality
    configs, and ``vqa``); only the images those rows need are read. Each image file is read
    once, even when several configs use it. Rows whose image is missing, empty or undecodable
    are reported in ``plan.report`` and left out. Tables carry ``features_for(config).arrow_schema``.
    A table holds up to ``row_group_bytes`` of image bytes; when the unfinished tables of all
    outputs together hold more than ``pending_bytes``, the fullest is yielded early.
    """
    wanted = set(targets) if targets is not None else {
        (c, s) for c in (*MODALITIES, "vqa") for s in ("train", "test")
    }
    report = plan.report

    def needed(e: ImageEntry) -> bool:
        if e.captions:
            mod = MODALITIES[e.modality]
            if (mod, e.split) in wanted or ("captions", e.split) in wanted:
                return True
        return any(("vqa", s) in wanted and rows for s, rows in e.qa.items())

    todo = [e for e in plan.images if needed(e)]
    batches: dict[tuple[str, str], _Batch] = {}
    bar = _progress(len(todo), "reading images", progress)
    for e, (data, problem) in zip(todo, read_images_ordered([e.path for e in todo], num_proc=num_proc), strict=True):
        bar.update(1)
        if problem is not None:
            report.images["bad"] += 1
            for file, row in e.rows():
                report.skip(file, row, "image", e.key, problem)
            continue
        assert data is not None
        report.images["written"] += 1
        report.images["bytes"] += len(data)
        image = (data, Path(e.key).name)
        textbook = TEXTBOOKS.get(e.textbook_id) if e.textbook_id else None
        if e.captions:
            for c in e.captions:
                out_cfg = MODALITIES[c.modality]
                key = (out_cfg, e.split) if (out_cfg, e.split) in wanted else ("captions", e.split)
                if key not in wanted:
                    continue
                b = batches.setdefault(key, _Batch("clinical"))
                b.add(
                    {"image": image, "image_id": e.image_id, "caption": c.caption, "modality": c.modality,
                     "textbook_id": e.textbook_id, "textbook": textbook, "age": c.age, "sex": c.sex},
                    len(data),
                )
                report.files[c.file].rows_written += 1
        for split, rows in e.qa.items():
            key = ("vqa", split)
            if key not in wanted or not rows:
                continue
            b = batches.setdefault(key, _Batch("vqa"))
            for r in rows:
                b.add(
                    {"image": image, "image_id": e.image_id, "question": r.question, "answer": r.answer,
                     "modality": e.modality, "textbook_id": e.textbook_id, "textbook": textbook},
                    len(data),
                )
                report.files[r.file].rows_written += 1
        # Flush only between images: the rows of one image stay in one row group, so the vqa
        # dictionary stores its bytes once however many questions it has.
        pending = sum(b.nbytes for b in batches.values())
        for key, b in sorted(batches.items(), key=lambda kv: -kv[1].nbytes):
            if b.nbytes < row_group_bytes and pending <= pending_bytes:
                break
            pending -= b.nbytes
            yield key[0], key[1], b.to_table()
            del batches[key]
    bar.close()
    for (cfg, split), b in sorted(batches.items()):
        if b.rows:
            yield cfg, split, b.to_table()


# --------------------------------------------------------------------------------------------
# The instruct config: LLaVA conversations -> TRL / transformers conversational vision format
# --------------------------------------------------------------------------------------------

_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
_IMAGE_MARK = "<image>"


def llava_to_messages(conversations: Any) -> list[dict[str, Any]]:
    """Convert LLaVA ``conversations`` to chat ``messages`` with typed content.

    ``[{"from": "human", "value": "<image>\\nWhat is shown?"}, {"from": "gpt", "value": "A nevus."}]``
    becomes ``[{"role": "user", "content": [{"type": "image", "text": None}, {"type": "text",
    "text": "What is shown?"}]}, {"role": "assistant", "content": [{"type": "text", "text":
    "A nevus."}]}]`` - the form TRL's SFTTrainer and ``processor.apply_chat_template`` take for
    vision SFT (the image itself is in the row's ``images`` column). The image entry goes where
    the ``<image>`` marker was (before or after the text); with no marker it opens the first user
    turn, as LLaVA's own preprocessing does. Raises ValueError on anything malformed.
    """
    if not isinstance(conversations, list) or not conversations:
        raise ValueError("'conversations' is missing or not a non-empty list")
    messages = []
    marks = 0
    for turn_index, turn in enumerate(conversations):
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            raise ValueError(f"turn {turn_index} is not an object with 'from' and 'value'")
        role = _ROLES.get(str(turn["from"]).strip().lower())
        if role is None:
            raise ValueError(f"turn {turn_index} has unknown speaker {turn['from']!r} (expected human/gpt)")
        value = turn["value"]
        if not isinstance(value, str):
            raise ValueError(f"turn {turn_index} 'value' is not a string")
        n = value.count(_IMAGE_MARK)
        marks += n
        if n and role != "user":
            raise ValueError(f"turn {turn_index}: {_IMAGE_MARK} in a {role} turn")
        if n:
            before, _, after = value.partition(_IMAGE_MARK)
            text = (before + after).strip()
            content = [{"type": "image", "text": None}]
            if text:
                item = {"type": "text", "text": text}
                content = content + [item] if not before.strip() else [item] + content
        else:
            text = value.strip()
            if not text:
                raise ValueError(f"turn {turn_index} ({role}) is empty")
            content = [{"type": "text", "text": text}]
        messages.append({"role": role, "content": content})
    if marks > 1:
        raise ValueError(f"{marks} {_IMAGE_MARK} markers; the LLaVA format has one image per conversation")
    if not any(m["role"] == "assistant" for m in messages):
        raise ValueError("no assistant (gpt) turn")
    if not any(m["role"] == "user" for m in messages):
        raise ValueError("no user (human) turn")
    if marks == 0:
        first_user = next(m for m in messages if m["role"] == "user")
        first_user["content"].insert(0, {"type": "image", "text": None})
    return messages


def _instruct_image_path(value: str, plan: ReleasePlan, json_path: Path) -> Path:
    rel = value.strip().replace("\\", "/")
    candidates = [plan.root / rel, plan.source / rel, json_path.parent / rel, plan.root / _image_key(Path(rel).name)]
    for c in candidates:
        if c.is_file():
            return c
    return candidates[0]


def iter_instruct_tables(plan: ReleasePlan, *, num_proc: int = 1, row_group_bytes: int = ROW_GROUP_BYTES,
                         progress: bool = False) -> Iterator[pa.Table]:
    """Yield ``instruct`` tables (split ``train``) from the plan's LLaVA JSON files.

    A file that is not a JSON list stops the build; a record without an image, without an
    assistant turn or otherwise malformed is reported with the file and its index and left out.
    """
    report = plan.report
    for f in plan.instruct_files:
        try:
            records = json.loads(f.path.read_text(encoding="utf-8-sig"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ReleaseError(f"{f.display}: malformed JSON ({e}); expected a LLaVA list of conversations") from e
        if not isinstance(records, list):
            raise ReleaseError(f"{f.display}: expected a JSON list of conversations, got {type(records).__name__}")
        counts = report.files[f.display]
        source = f.path.stem
        good: list[tuple[int, str, Path, list[dict[str, Any]]]] = []
        for index, rec in enumerate(records):
            counts.rows_read += 1
            if not isinstance(rec, dict):
                report.skip(f.display, index, None, _short(rec), "record is not a JSON object")
                continue
            image = rec.get("image")
            if not isinstance(image, str) or not image.strip():
                report.skip(f.display, index, "image", image, "conversation without an image")
                continue
            try:
                messages = llava_to_messages(rec.get("conversations"))
            except ValueError as e:
                report.skip(f.display, index, "conversations", _short(rec.get("conversations")), f"malformed conversation: {e}")
                continue
            rec_id = str(rec["id"]) if rec.get("id") is not None else f"{source}-{index}"
            good.append((index, rec_id, _instruct_image_path(image, plan, f.path), messages))
        batch: dict[str, list[Any]] = {"images": [], "messages": [], "source": [], "id": []}
        nbytes = 0
        bar = _progress(len(good), f"reading {f.path.name}", progress)
        for (index, rec_id, path, messages), (data, problem) in zip(good, read_images_ordered([g[2] for g in good], num_proc), strict=True):
            bar.update(1)
            if problem is not None:
                report.skip(f.display, index, "image", str(path.name), problem)
                continue
            batch["images"].append([{"bytes": data.to_pybytes(), "path": path.name}])
            batch["messages"].append(messages)
            batch["source"].append(source)
            batch["id"].append(rec_id)
            counts.rows_written += 1
            nbytes += len(data)
            if nbytes >= row_group_bytes:
                yield pa.Table.from_pydict(batch, schema=INSTRUCT_FEATURES.arrow_schema)
                batch = {k: [] for k in batch}
                nbytes = 0
        bar.close()
        if batch["id"]:
            yield pa.Table.from_pydict(batch, schema=INSTRUCT_FEATURES.arrow_schema)


def _progress(total: int, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=not enabled or None, leave=False)


# --------------------------------------------------------------------------------------------
# The datasets builder
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class MMSkinConfig(datasets.BuilderConfig):
    """Options of the MM-Skin builder (``data_dir`` is the release)."""

    test_csv: str | None = None
    instruct_json: tuple[str, ...] | None = None
    modality_map: tuple[str, ...] = ()  # "VALUE=MODALITY" strings, as on the command line
    num_proc: int = 4


class MMSkin(datasets.ArrowBasedBuilder):
    """MM-Skin from the authors' release: ``MMSkin(config_name="vqa", data_dir=RELEASE)``.

    >>> builder = MMSkin(config_name="vqa", data_dir="examples/mm-skin-sample")  # doctest: +SKIP
    >>> builder.download_and_prepare(); ds = builder.as_dataset(split="test")  # doctest: +SKIP
    """

    BUILDER_CONFIG_CLASS = MMSkinConfig
    BUILDER_CONFIGS = [
        MMSkinConfig(name="vqa", description="Open-ended VQA pairs (MM-Skin-O) with their image."),
        MMSkinConfig(name="clinical", description="Captioned clinical photographs (MM-Skin-C/D)."),
        MMSkinConfig(name="dermoscopic", description="Captioned dermoscopy images (MM-Skin-C/D)."),
        MMSkinConfig(name="pathology", description="Captioned histopathology images (MM-Skin-C/D)."),
        MMSkinConfig(name="captions", description="All captioned images (the three modality configs)."),
        MMSkinConfig(name="instruct", description="LLaVA instruction data as chat messages (TRL vision SFT form)."),
    ]
    DEFAULT_CONFIG_NAME = DEFAULT_CONFIG

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description="MM-Skin (arXiv 2505.06152): dermatology image-text data from 15 textbooks.",
            features=features_for(self.config.name),
            citation=CITATION_FILE.read_text(encoding="utf-8").strip(),
        )

    def _plan(self) -> ReleasePlan:
        if getattr(self, "_release_plan", None) is None:
            if not self.config.data_dir:
                raise ReleaseError("MMSkin needs data_dir=<the MM-Skin release folder>")
            self._release_plan = load_release(
                self.config.data_dir,
                test_csv=self.config.test_csv,
                instruct_json=list(self.config.instruct_json) if self.config.instruct_json else None,
                modality_map=parse_modality_map(self.config.modality_map),
            )
        return self._release_plan

    def _split_generators(self, dl_manager: Any) -> list[datasets.SplitGenerator]:
        plan = self._plan()
        splits = plan.splits(self.config.name)
        if not splits:
            raise ReleaseError(
                f"config {self.config.name!r} has no rows in {self.config.data_dir}"
                + (" (pass instruct_json=[...] or put Dataframe/Pretrain/vqa_MM.json in the release)" if self.config.name == "instruct" else "")
            )
        return [datasets.SplitGenerator(name=s, gen_kwargs={"split": s}) for s in splits]

    def _generate_tables(self, split: str) -> Iterator[tuple[Any, pa.Table]]:
        plan = self._plan()
        key = datasets.builder.Key
        if self.config.name == "instruct":
            tables: Iterable[pa.Table] = iter_instruct_tables(plan, num_proc=self.config.num_proc)
        else:
            tables = (t for _, _, t in iter_tables(plan, [(self.config.name, split)], num_proc=self.config.num_proc))
        for i, table in enumerate(tables):
            yield key(0, i), table
        for issue in plan.report.skipped:
            datasets.utils.logging.get_logger(__name__).warning(
                f"{issue.file} row {issue.row}: not written: {issue.reason} ({issue.column}={_short(issue.value)})"
            )
        plan.report.skipped.clear()


# --------------------------------------------------------------------------------------------
# The build: streaming Parquet shards, card, report, atomic rename
# --------------------------------------------------------------------------------------------


def _leaves(schema: pa.Schema) -> list[str]:
    """Parquet column paths of an Arrow schema (lists as '.list.element', pyarrow's default)."""
    out: list[str] = []

    def walk(prefix: str, t: pa.DataType) -> None:
        if pa.types.is_struct(t):
            for f in t:
                walk(f"{prefix}.{f.name}", f.type)
        elif pa.types.is_list(t) or pa.types.is_large_list(t):
            walk(f"{prefix}.list.element", t.value_type)
        else:
            out.append(prefix)

    for f in schema:
        walk(f.name, f.type)
    return out


class ShardedParquetWriter:
    """Streams tables of one (config, split) into ``{split}-NNNNN-of-NNNNN.parquet`` files.

    Image bytes are stored uncompressed (PNG/JPEG do not compress further) and without
    statistics; in ``vqa`` they are dictionary-encoded so the several QA rows of one image
    share one copy inside a row group. Text columns get zstd.
    """

    def __init__(self, folder: Path, split: str, features: Features, *, max_shard_bytes: int, dedup_images: bool,
                 row_group_bytes: int = ROW_GROUP_BYTES) -> None:
        self.folder, self.split, self.features = folder, split, features
        self.schema = features.arrow_schema
        self.max_shard_bytes = max_shard_bytes
        leaves = _leaves(self.schema)
        image_leaves = [p for p in leaves if p.endswith(".bytes")]
        text_leaves = [p for p in leaves if p not in image_leaves]
        self.options: dict[str, Any] = {
            "compression": {p: ("none" if p in image_leaves else "zstd") for p in leaves},
            "use_dictionary": text_leaves + (image_leaves if dedup_images else []),
            "write_statistics": [p for p in text_leaves if not p.endswith(".path")],
            "dictionary_pagesize_limit": 2 * row_group_bytes if dedup_images else 1 << 20,
            # pages are cut every few rows (~1-2 MB of images), not once per 1,024 rows: with
            # the default, each row group's images were copied into one page buffer (+32 MB each)
            "write_batch_size": 4,
        }
        self.paths: list[Path] = []
        self.rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._shard_bytes = 0

    def write(self, table: pa.Table) -> None:
        if self._writer is None or self._shard_bytes >= self.max_shard_bytes:
            self._close_current()
            path = self.folder / f"{self.split}-{len(self.paths):05d}.parquet.partial"
            self.paths.append(path)
            self._writer = pq.ParquetWriter(path, self.schema, **self.options)
            self._shard_bytes = 0
        self._writer.write_table(table, row_group_size=max(1, table.num_rows))
        self._shard_bytes += table.nbytes
        self.rows += table.num_rows

    def _close_current(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def close(self) -> list[Path]:
        """Finish and give the shards their final ``-of-N`` names."""
        self._close_current()
        n = len(self.paths)
        final = []
        for i, p in enumerate(self.paths):
            target = self.folder / f"{self.split}-{i:05d}-of-{n:05d}.parquet"
            p.rename(target)
            final.append(target)
        return final


class _BackgroundWrites:
    """Runs each output's Parquet writes on a thread of its own, with bounded bytes in flight.

    ``ParquetWriter.write_table`` releases the GIL for its copies and the kernel's page-cache
    writes, so the outputs (a modality config and vqa take the same image) are written in
    parallel with each other and with the main thread's reading and row assembly. One thread per
    output keeps each output's row groups in order. The main thread waits when ``budget`` bytes
    of tables are queued or being written, which bounds memory. A failed write is raised by the
    next :meth:`submit` or by :meth:`close`.
    """

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._in_flight = 0
        self._cond = threading.Condition()
        self._threads: dict[Any, ThreadPoolExecutor] = {}
        self._futures: list[Future[None]] = []

    def submit(self, key: Any, writer: ShardedParquetWriter, table: pa.Table) -> None:
        self._raise_failed()
        n = min(table.nbytes, self.budget)
        with self._cond:
            while self._in_flight + n > self.budget:  # a failed write frees its bytes too
                self._cond.wait()
            self._in_flight += n
        self._raise_failed()
        pool = self._threads.get(key)
        if pool is None:
            pool = self._threads[key] = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mm-skin-write")
        self._futures.append(pool.submit(self._write, writer, table, n))

    def _write(self, writer: ShardedParquetWriter, table: pa.Table, n: int) -> None:
        try:
            writer.write(table)
            del table
            # Hand the freed pages back: the allocator (mimalloc) otherwise keeps each writer
            # thread's freed pages, and RSS grew with the release instead of staying flat.
            pa.default_memory_pool().release_unused()
        finally:
            with self._cond:
                self._in_flight -= n
                self._cond.notify_all()

    def _raise_failed(self) -> None:
        done = [f for f in self._futures if f.done()]
        self._futures = [f for f in self._futures if not f.done()]
        for f in done:
            f.result()

    def close(self, *, raise_failed: bool = True) -> None:
        """Wait for every queued write; raise the first failure (unless ``raise_failed`` is False)."""
        for pool in self._threads.values():
            pool.shutdown(wait=True)
        if raise_failed:
            self._raise_failed()


#: table bytes queued for or inside ParquetWriter.write_table at once (see _BackgroundWrites)
WRITE_BUDGET_BYTES = 64 << 20


@dataclasses.dataclass
class BuildResult:
    """What :func:`build` produced."""

    out: Path
    report: BuildReport
    shards: dict[str, dict[str, list[str]]]  # config -> split -> relative shard paths
    seconds: float


def _parse_size(size: str | int) -> int:
    if isinstance(size, int):
        return size
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]i?B?|B)?\s*", size, re.I)
    if not m:
        raise ValueError(f"cannot parse size {size!r} (e.g. 500MB)")
    unit = (m.group(2) or "B").upper().rstrip("B").rstrip("I")
    return int(float(m.group(1)) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[unit])


def build(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str] = "mm-skin",
    *,
    test_csv: str | os.PathLike[str] | None = None,
    instruct_json: Sequence[str | os.PathLike[str]] | None = None,
    modality_map: dict[str, str] | Sequence[str] | None = None,
    strict: bool = False,
    overwrite: bool = False,
    num_proc: int | None = None,
    max_shard_size: str | int = "500MB",
    progress: bool = False,
    card: bool = True,
) -> BuildResult:
    """Build the Hub-ready MM-Skin folder ``out`` from the release at ``source``.

    Writes one folder per config with ``{split}-NNNNN-of-NNNNN.parquet`` shards, ``README.md``
    (the dataset card, its YAML lists the configs), ``build_report.json`` and
    ``assets/statistics.png``, into a temporary sibling renamed to ``out`` at the end.

    >>> build("examples/mm-skin-sample", "/tmp/mm-skin", overwrite=True).report.written["vqa"]  # doctest: +SKIP
    {'test': 12, 'train': 48}
    """
    t0 = time.perf_counter()
    out_path = Path(out).resolve()
    if out_path.exists() and not overwrite:
        raise ReleaseError(f"{out_path} exists; pass --overwrite to replace it")
    if isinstance(modality_map, dict):
        mapping = {_norm_modality(k): v for k, v in parse_modality_map(f"{k}={v}" for k, v in modality_map.items()).items()}
    else:
        mapping = parse_modality_map(modality_map or [])
    plan = load_release(source, test_csv=test_csv, instruct_json=instruct_json, modality_map=mapping)
    report = plan.report
    num_proc = num_proc or min(4, os.cpu_count() or 1)
    max_shard_bytes = _parse_size(max_shard_size)

    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.parent / f".{out_path.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        writers: dict[tuple[str, str], ShardedParquetWriter] = {}
        # a row group is the unit of sharding: keep several per shard
        row_group_bytes = max(1, min(ROW_GROUP_BYTES, max_shard_bytes // 4))

        def writer(cfg: str, split: str) -> ShardedParquetWriter:
            if (cfg, split) not in writers:
                (tmp / cfg).mkdir(exist_ok=True)
                writers[(cfg, split)] = ShardedParquetWriter(
                    tmp / cfg, split, features_for(cfg), max_shard_bytes=max_shard_bytes, dedup_images=cfg == "vqa",
                    row_group_bytes=row_group_bytes,
                )
            return writers[(cfg, split)]

        card_imports = _start_card_imports() if card else None
        writes = _BackgroundWrites(WRITE_BUDGET_BYTES)
        try:
            for cfg, split, table in iter_tables(plan, num_proc=num_proc, progress=progress, row_group_bytes=row_group_bytes,
                                                 pending_bytes=max(row_group_bytes, PENDING_BYTES)):
                writes.submit((cfg, split), writer(cfg, split), table)
            for table in iter_instruct_tables(plan, num_proc=num_proc, progress=progress, row_group_bytes=row_group_bytes):
                writes.submit(("instruct", "train"), writer("instruct", "train"), table)
        except BaseException:
            writes.close(raise_failed=False)  # the first error is the one to report
            raise
        writes.close()

        shards: dict[str, dict[str, list[str]]] = {}
        for (cfg, split), w in sorted(writers.items()):
            paths = w.close()
            shards.setdefault(cfg, {})[split] = [p.relative_to(tmp).as_posix() for p in paths]
            report.count_written(cfg, split, w.rows)
        # `captions` reuses the modality folders' files: no byte is stored twice
        for m in MODALITIES:
            for split, paths in shards.get(m, {}).items():
                shards.setdefault("captions", {}).setdefault(split, []).extend(paths)
                report.count_written("captions", split, report.written[m][split])
        if "captions" in shards:
            shards["captions"] = {s: sorted(p) for s, p in shards["captions"].items()}
        if not shards:
            raise ReleaseError(f"{plan.source}: no row could be written (see the reasons above)")

        if strict and (report.skipped or report.warnings):
            raise StrictError(
                f"--strict: {len(report.skipped)} rows would not be written and {len(report.warnings)} rows have warnings:\n"
                + report.summary()
            )
        (tmp / "build_report.json").write_text(json.dumps(report.as_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        if card:
            assert card_imports is not None
            card_imports.join()
            from_card = render_card(tmp, shards, report)
            (tmp / "README.md").write_text(from_card, encoding="utf-8")

        if out_path.exists():  # --overwrite: swap, then delete the old folder
            old = out_path.parent / f".{out_path.name}.old-{os.getpid()}"
            out_path.rename(old)
            tmp.rename(out_path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out_path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return BuildResult(out=out_path, report=report, shards=shards, seconds=time.perf_counter() - t0)


# --------------------------------------------------------------------------------------------
# The dataset card
# --------------------------------------------------------------------------------------------

# One BibTeX entry for both cards (cards/citation.bib), read where it is needed.
CITATION_FILE = CARDS_DIR / "citation.bib"


def _size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return label
    return "1M<n<10M"


def _length_stats(texts: Sequence[str]) -> dict[str, float]:
    if not texts:
        return {"n": 0, "mean": 0.0, "median": 0.0, "p95": 0.0, "max": 0}
    lengths = sorted(len(t.split()) for t in texts)
    n = len(lengths)
    return {"n": n, "mean": sum(lengths) / n, "median": float(lengths[n // 2]), "p95": float(lengths[min(n - 1, int(0.95 * n))]), "max": lengths[-1]}


def compute_statistics(folder: Path, shards: dict[str, dict[str, list[str]]]) -> dict[str, Any]:
    """Statistics read back from the written Parquet files (text columns only, no image bytes)."""
    stats: dict[str, Any] = {"rows": {}, "bytes": {}, "modality": {}, "textbook": {}, "lengths": {}}
    texts: dict[str, list[str]] = collections.defaultdict(list)
    textbook: dict[int | None, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for cfg, splits in shards.items():
        for split, paths in splits.items():
            stats["rows"].setdefault(cfg, {})[split] = sum(pq.read_metadata(folder / p).num_rows for p in paths)
            stats["bytes"].setdefault(cfg, {})[split] = sum((folder / p).stat().st_size for p in paths)
            if cfg in ("captions", "instruct"):
                continue
            cols = ["modality", "textbook_id"] + (["question", "answer"] if cfg == "vqa" else ["caption"])
            table = pa.concat_tables(pq.read_table(folder / p, columns=cols) for p in paths)
            d = table.to_pydict()
            mod_counts = collections.Counter(MODALITIES[m] if m is not None else "unknown" for m in d["modality"])
            stats["modality"].setdefault(cfg, {})[split] = dict(mod_counts)
            for t in d["textbook_id"]:
                textbook[t][f"{cfg}/{split}"] += 1
            for col in cols[2:]:
                texts[f"{col} ({cfg})" if col == "caption" else col].extend(d[col])
    stats["textbook"] = {k: dict(v) for k, v in sorted(textbook.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))}
    caption_texts = [t for k, v in texts.items() if k.startswith("caption") for t in v]
    stats["lengths"] = {
        "caption": _length_stats(caption_texts),
        "question": _length_stats(texts.get("question", [])),
        "answer": _length_stats(texts.get("answer", [])),
    }
    stats["_caption_lengths"] = [len(t.split()) for t in caption_texts]
    stats["_answer_lengths"] = [len(t.split()) for t in texts.get("answer", [])]
    return stats


def _import_card_modules() -> None:
    import jinja2  # noqa: F401
    import matplotlib
    import yaml  # noqa: F401

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401


def _start_card_imports() -> threading.Thread:
    """Import the card's modules (matplotlib: ~1 s) on a thread while the images are written.

    The writes spend their time outside the GIL (copies, page-cache writes), so the imports
    cost almost no wall time there instead of a fixed second at the end of every build.
    An import error is not lost: :func:`render_card` imports the same modules again.
    """
    def run() -> None:
        try:
            _import_card_modules()
        except Exception:  # noqa: BLE001 - render_card's own import raises it with its traceback
            pass

    thread = threading.Thread(target=run, name="mm-skin-card-imports", daemon=True)
    thread.start()
    return thread


def draw_statistics(stats: dict[str, Any], path: Path) -> None:
    """A PNG with images per textbook and modality, and caption / answer length histograms."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), dpi=90)
    books = [b for b in stats["textbook"] if b is not None]
    bottoms = [0] * len(books)
    for m in MODALITIES:
        counts = [sum(stats["textbook"][b].get(f"{m}/{s}", 0) for s in ("train", "test")) for b in books]
        ax1.bar([f"bk{b}" for b in books], counts, bottom=bottoms, label=m)
        bottoms = [a + c for a, c in zip(bottoms, counts, strict=True)]
    ax1.set_title("Captioned images per textbook")
    ax1.set_ylabel("images")
    ax1.tick_params(axis="x", rotation=60)
    ax1.legend()
    for key, label in (("_caption_lengths", "captions"), ("_answer_lengths", "VQA answers")):
        if stats[key]:
            ax2.hist(stats[key], bins=30, alpha=0.6, label=label)
    ax2.set_title("Length (words)")
    ax2.set_xlabel("words")
    ax2.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    # fixed metadata: the same data gives the same PNG bytes, so an unchanged re-push is a no-op
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def render_card(folder: Path, shards: dict[str, dict[str, list[str]]], report: BuildReport) -> str:
    """Render cards/dataset_card.md.jinja for a built folder (also draws assets/statistics.png)."""
    import jinja2
    import yaml

    stats = compute_statistics(folder, shards)
    draw_statistics(stats, folder / "assets" / "statistics.png")
    order = [c for c in ALL_CONFIGS if c in shards]
    configs = []
    infos = []
    for cfg in order:
        entry: dict[str, Any] = {"config_name": cfg}
        if cfg == DEFAULT_CONFIG or (DEFAULT_CONFIG not in shards and cfg == order[0]):
            entry["default"] = True
        entry["data_files"] = [{"split": s, "path": shards[cfg][s]} for s in ("train", "test") if s in shards[cfg]]
        configs.append(entry)
        info = datasets.DatasetInfo(
            features=features_for(cfg),
            splits=datasets.SplitDict(
                {s: datasets.SplitInfo(name=s, num_examples=stats["rows"][cfg][s], num_bytes=stats["bytes"][cfg][s]) for s in shards[cfg]}
            ),
            download_size=sum(stats["bytes"][cfg].values()),
            dataset_size=sum(stats["bytes"][cfg].values()),
        )
        infos.append({"config_name": cfg, **info._to_yaml_dict()})
    total_rows = sum(stats["rows"].get("vqa", {}).values()) + sum(stats["rows"].get("captions", {}).values())
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
    template = env.from_string(CARD_TEMPLATE.read_text(encoding="utf-8"))

    def dump(obj: Any) -> str:
        return yaml.safe_dump(obj, sort_keys=False, allow_unicode=True, width=1000).rstrip()

    return template.render(
        configs_yaml=dump({"configs": configs}),
        dataset_info_yaml=dump({"dataset_info": infos}),
        size_category=_size_category(total_rows),
        stats=stats,
        configs=order,
        default_config=next(c["config_name"] for c in configs if c.get("default")),
        modalities=MODALITIES,
        textbooks=TEXTBOOKS,
        files=report.files,
        notes=report.notes,
        report=report,
        skipped=len(report.skipped),
        warnings=len(report.warnings),
        has_test=any("test" in s for s in shards.values()),
        modality_values=report.modality_values,
        citation=CITATION_FILE.read_text(encoding="utf-8").strip(),
        version=VERSION,
    )


# --------------------------------------------------------------------------------------------
# Push
# --------------------------------------------------------------------------------------------


def validate_folder(folder: str | os.PathLike[str]) -> dict[str, dict[str, int]]:
    """Check a built folder before it is pushed; return config -> split -> rows.

    The card must parse with huggingface_hub's ``DatasetCard`` and list ``configs`` (exactly one
    ``default``); every shard must be readable Parquet whose row counts match the card's
    ``dataset_info``; every config must load with ``datasets.load_dataset(folder, config,
    streaming=True)`` and its first row's image must decode. Raises :class:`PushError`.
    """
    from huggingface_hub import DatasetCard

    root = Path(folder)
    readme = root / "README.md"
    if not readme.is_file():
        raise PushError(f"{root}: no README.md (build the folder with `mm-skin build`)")
    try:
        card = DatasetCard.load(readme)
    except Exception as e:
        raise PushError(f"{readme}: the dataset card does not parse: {e}") from e
    data = card.data.to_dict()
    configs = data.get("configs")
    if not isinstance(configs, list) or not configs:
        raise PushError(f"{readme}: no `configs:` in the YAML header")
    defaults = [c.get("config_name") for c in configs if c.get("default")]
    if len(defaults) != 1:
        raise PushError(f"{readme}: expected exactly one config with `default: true`, found {defaults}")
    infos = {i.get("config_name"): i for i in data.get("dataset_info") or []}
    if any(p.suffix == ".py" for p in root.iterdir()):
        raise PushError(f"{root}: contains a .py file; datasets refuses to load script folders")
    counts: dict[str, dict[str, int]] = {}
    for cfg in configs:
        name = cfg["config_name"]
        for df in cfg.get("data_files", []):
            paths = df["path"] if isinstance(df["path"], list) else [df["path"]]
            rows = 0
            for p in paths:
                matches = sorted(root.glob(p))
                if not matches:
                    raise PushError(f"{readme}: config {name!r} split {df['split']!r} names {p!r}, which is not in {root}")
                for m in matches:
                    try:
                        rows += pq.read_metadata(m).num_rows
                    except Exception as e:
                        raise PushError(f"{m}: not a readable Parquet file: {e}") from e
            counts.setdefault(name, {})[df["split"]] = rows
            expected = {s["name"]: s["num_examples"] for s in (infos.get(name, {}).get("splits") or [])}
            if df["split"] in expected and expected[df["split"]] != rows:
                raise PushError(
                    f"{readme}: dataset_info says {name}/{df['split']} has {expected[df['split']]} rows, the files hold {rows}"
                )
        try:
            ds = datasets.load_dataset(str(root), name, streaming=True)
            for it in ds.values():
                row = next(iter(it))
                img = row.get("image") if "image" in row else (row.get("images") or [None])[0]
                if img is not None:
                    img.load()
        except Exception as e:
            raise PushError(f"{root}: config {name!r} does not load with datasets.load_dataset: {type(e).__name__}: {e}") from e
    return counts


def _redact(text: str, token: str | None) -> str:
    return text.replace(token, "hf_***") if token else text


def _probe_endpoint(endpoint: str, timeout: float = 3.0) -> None:
    """Fail in seconds, not after a retry loop, when the Hub endpoint cannot be reached."""
    parsed = urllib.parse.urlparse(endpoint)
    host = parsed.hostname or ""
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as e:
        raise PushError(f"cannot reach the Hub at {endpoint} ({e}); check the network or HF_ENDPOINT") from e


def push_folder(
    folder: str | os.PathLike[str],
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
) -> str | None:
    """Validate a built folder and upload it to the dataset repo ``repo_id`` in ONE commit.

    Returns the commit URL, or None when the repo already held exactly these files (no commit
    is made: huggingface_hub drops unchanged files and skips an empty commit). The token comes
    from ``token``, ``HF_TOKEN`` or the cached ``hf auth login``; it is never printed. Parquet
    shards go through the Hub's large-file path (LFS/Xet) chosen by the server. Stale shards
    from an earlier build (``*.parquet`` not in this folder) are deleted in the same commit.

    >>> push_folder("mm-skin", "me/mm-skin", private=True)  # doctest: +SKIP
    'https://huggingface.co/datasets/me/mm-skin/commit/...'
    """
    from huggingface_hub import (
        CommitOperationAdd,
        CommitOperationDelete,
        HfApi,
        constants,
        get_token,
    )
    from huggingface_hub.errors import HfHubHTTPError

    validate_folder(folder)
    if constants.is_offline_mode():
        raise PushError("HF_HUB_OFFLINE=1 is set: unset it to push (validation passed, nothing uploaded)")
    token = token or get_token()
    if not token:
        raise PushError("no Hugging Face token: set HF_TOKEN or run `hf auth login` (validation passed, nothing uploaded)")
    endpoint = constants.ENDPOINT
    _probe_endpoint(endpoint)
    api = HfApi(endpoint=endpoint, token=token)
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        if revision:
            api.create_branch(repo_id, repo_type="dataset", branch=revision, exist_ok=True)
        before = api.repo_info(repo_id, repo_type="dataset", revision=revision).sha
        # create_commit, not upload_folder: with hf_xet installed upload_folder switches to a
        # pipeline that commits large folders in several batches, and a push must be ONE commit.
        # Unchanged files are dropped by huggingface_hub and an empty commit is skipped.
        local = sorted(p.relative_to(folder).as_posix() for p in Path(folder).rglob("*") if p.is_file())
        operations: list[Any] = [
            CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(Path(folder) / rel)) for rel in local
        ]
        remote = api.list_repo_files(repo_id, repo_type="dataset", revision=revision)
        local_set = set(local)
        operations += [
            CommitOperationDelete(path_in_repo=rel)
            for rel in remote
            if rel.endswith(".parquet") and rel not in local_set  # stale shards of an earlier build
        ]
        info = api.create_commit(
            repo_id=repo_id,
            repo_type="dataset",
            operations=operations,
            revision=revision,
            parent_commit=before,
            commit_message=commit_message or f"Upload MM-Skin ({VERSION})",
        )
    except HfHubHTTPError as e:
        raise PushError(_redact(f"the Hub refused the push to {repo_id}: {e}", token)) from None
    except OSError as e:
        raise PushError(_redact(f"push to {repo_id} failed: {e}", token)) from None
    return None if info.oid == before else info.commit_url


# --------------------------------------------------------------------------------------------
# Command line: mm-skin build / mm-skin push
# --------------------------------------------------------------------------------------------

EXIT_OK, EXIT_ERROR, EXIT_BAD_INPUT, EXIT_STRICT, EXIT_PUSH = 0, 1, 2, 3, 4


def _cmd_build(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    try:
        result = build(
            args.source, args.out, test_csv=args.test_csv, instruct_json=args.instruct_json,
            modality_map=args.modality_map, strict=args.strict, overwrite=args.overwrite,
            num_proc=args.num_proc, max_shard_size=args.max_shard_size, progress=True,
        )
    except StrictError as e:
        print(f"mm-skin build: {e}", file=sys.stderr)
        return EXIT_STRICT
    except ReleaseError as e:
        print(f"mm-skin build: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    r = result.report
    print(f"mm-skin build: wrote {result.out} in {time.perf_counter() - t0:.1f}s "
          f"({r.images['written']} images, {r.images['bytes'] / 1e6:.1f} MB)", file=sys.stderr)
    print(r.summary(), file=sys.stderr)
    print(f"  details: {result.out / 'build_report.json'}", file=sys.stderr)
    print(result.out)
    return EXIT_OK


def _cmd_push(args: argparse.Namespace) -> int:
    try:
        url = push_folder(args.folder, args.repo_id, private=args.private, revision=args.revision,
                          commit_message=args.commit_message)
    except PushError as e:
        print(f"mm-skin push: error: {e}", file=sys.stderr)
        return EXIT_PUSH
    if url is None:
        print(f"mm-skin push: {args.repo_id} already holds this folder; no new commit", file=sys.stderr)
    else:
        print(url)
    return EXIT_OK


def make_parser() -> argparse.ArgumentParser:
    """The ``mm-skin`` argument parser (sub-commands ``build`` and ``push``)."""
    parser = argparse.ArgumentParser(
        prog="mm-skin",
        description="Build the MM-Skin dataset from the authors' release into a Hub-ready Parquet folder, and push it.",
        epilog="exit codes: 0 ok, 2 bad input (the message says which file/column/value and the fix), "
               "3 --strict and some rows were not written, 4 push refused/failed.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser(
        "build",
        help="release -> Parquet folder + dataset card + build_report.json",
        description="Build OUT from SOURCE, the MM-Skin release (caption.csv, VQA.csv, dataset/*.png at SOURCE or "
                    "SOURCE/MM-SkinQA). The official test split is SOURCE/Dataframe/test/vqa/MM-Skin_test.csv or --test-csv. "
                    "Rows that cannot be written are listed in OUT/build_report.json and summarised on stderr.",
    )
    b.add_argument("source", help="the release folder")
    b.add_argument("--out", default="mm-skin", help="output folder (default: ./mm-skin); written atomically")
    b.add_argument("--test-csv", help="the official VQA test CSV (default: SOURCE/Dataframe/test/vqa/MM-Skin_test.csv)")
    b.add_argument("--instruct-json", nargs="+", metavar="JSON",
                   help="LLaVA-format training JSON file(s) for the `instruct` config "
                        "(default: SOURCE/Dataframe/Pretrain/vqa_MM.json when present)")
    b.add_argument("--modality-map", nargs="+", default=[], metavar="VALUE=MODALITY",
                   help=f"map a modality string of caption.csv to one of {', '.join(MODALITIES)}")
    b.add_argument("--strict", action="store_true", help="fail (exit 3) instead of leaving out bad rows")
    b.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    b.add_argument("--num-proc", type=int, default=None, help="threads reading and checking images (default: min(4, CPUs))")
    b.add_argument("--max-shard-size", default="500MB", help="target Parquet shard size (default: 500MB)")
    b.set_defaults(func=_cmd_build)
    p = sub.add_parser(
        "push",
        help="validate a built folder and upload it to a Hub dataset repo in one commit",
        description="Validate FOLDER (card parses, every config loads) and upload it to REPO_ID in one commit. "
                    "The token comes from HF_TOKEN or `hf auth login`. Pushing an unchanged folder makes no commit.",
    )
    p.add_argument("folder")
    p.add_argument("repo_id", help="e.g. your-name/mm-skin")
    p.add_argument("--private", action="store_true", help="create the repo private (recommended: research-only data)")
    p.add_argument("--revision", help="branch to commit to (created if missing)")
    p.add_argument("--commit-message", help="commit message")
    p.set_defaults(func=_cmd_push)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mm-skin`` console script; returns the exit code."""
    args = make_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
