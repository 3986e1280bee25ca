"""What every benchmark reader yields and declares: :class:`Row`, :class:`Benchmark`, and the
helpers the publisher layouts share (reading a CSV by column aliases, finding image files).

A reader turns one publisher's download into :class:`Row` objects; it never opens an image
(the writer reads bytes once) and reports every row it cannot use in the build report.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from mm_skin.audit_sources import IMAGE_SUFFIXES

# the builder's own CSV reader: the same UTF-8 / BOM rules and one-line errors as `mm-skin build`
from mm_skin.release import read_header
from mm_skin.report import BuildReport, ReleaseError

#: Fitzpatrick skin types as written in the ``skin_type`` column
FITZPATRICK = ("I", "II", "III", "IV", "V", "VI")


@dataclasses.dataclass
class Row:
    """One image of a benchmark as a reader found it (``labels``: label set -> class, None: none)."""

    image: Path | None
    image_id: str
    labels: dict[str, str | None]
    file: str  # the file the row comes from (for the report)
    row: int  # its row number there (header = 1), or 0 for a folder listing
    skin_type: str | None = None
    age: int | None = None
    sex: str | None = None
    site: str | None = None
    lesion_id: str | None = None
    patient_id: str | None = None
    source: str | None = None
    split: str | None = None  # the publisher's own split, when the layout has one (Dermnet's folders)


Reader = Callable[[Path, BuildReport, "ImageFiles"], Iterator[Row]]


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """One publisher's dataset: its label sets (config -> class names), licence and reader.

    ``label_sets[default]`` is the label set the paper evaluates; class names ``None`` means the
    classes found in the data (sorted). ``group`` names the column a seeded split keeps on one side.
    """

    name: str
    title: str
    licence: str  # Hub licence id ("cc-by-nc-4.0", "other")
    terms: str  # the publisher's terms, as the card states them
    gated: bool  # the terms call for a private or gated repository
    homepage: str
    label_sets: Mapping[str, Sequence[str] | None]
    default: str
    read: Reader | None  # None: the rows come from the authors' label file alone
    group: str | None = None
    layout: str = ""  # what SOURCE must hold (for errors and docs)


class ImageFiles:
    """The image files under a folder, found by file name and by stem, walked once.

    Symbolic links are not followed (a link could lead out of SOURCE) and are counted.
    """

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.all: list[Path] = []  # every image file, in walk order
        self.by_name: dict[str, Path] = {}
        self.by_stem: dict[str, Path] = {}
        self.ambiguous: set[str] = set()
        self.links = 0
        for folder, dirs, files in os.walk(self.root):
            dirs.sort()
            for name in sorted(files):
                path = Path(folder) / name
                if path.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                if path.is_symlink():
                    self.links += 1
                    continue
                self.all.append(path)
                for key, table in ((name, self.by_name), (path.stem, self.by_stem)):
                    if key in table and table[key] != path:
                        self.ambiguous.add(key)
                    table.setdefault(key, path)

    def find(self, name: str) -> Path | None:
        """The file called ``name`` (with or without its suffix) anywhere under the root."""
        return self.by_name.get(name) or self.by_stem.get(name)


def read_table(report: BuildReport, path: Path, display: str, aliases: Mapping[str, Sequence[str]],
               required: Sequence[str], role: str = "labels",
               keep_others: bool = False) -> Iterator[tuple[int, dict[str, str]]]:
    """``(row number, canonical column -> stripped cell)`` for each data row of a CSV.

    Columns are matched by alias (:func:`mm_skin.columns.match_columns`); a missing required
    column or a header naming one column twice is a one-line :class:`ReleaseError`. The file is
    recorded in ``report`` (checksum, rows read); blank lines are listed as not written.
    ``keep_others``: the unmatched columns too, under their header names.
    """
    if not path.is_file():
        raise ReleaseError(f"{display}: not found at {path}; give the file as the publisher or the authors ship it "
                           "(layouts: `mm-skin benchmark build --help`)")
    header, found, rows = read_header(path, display, aliases, required)
    report.add_file(display, role, path)
    for i, cells in enumerate(rows, start=2):
        report.files[display].rows_read += 1
        if not any(cell.strip() for cell in cells):
            report.skip(display, i, None, "", "blank line")
            continue
        row = {c: (cells[j].strip() if j < len(cells) else "") for c, j in found.items()}
        if keep_others:
            row.update({h.strip(): (cells[j].strip() if j < len(cells) else "") for j, h in enumerate(header)
                        if j not in found.values() and h.strip()})
        yield i, row


def skin_type(value: str) -> str | None:
    """A Fitzpatrick skin type cell (``3``, ``3.0``, ``III``) as ``I``..``VI``; unknown (``-1``, blank) as None."""
    text = value.strip().upper()
    if text in FITZPATRICK:
        return text
    try:
        number = float(text)
    except ValueError:
        return None
    return FITZPATRICK[int(number) - 1] if number.is_integer() and 1 <= number <= 6 else None


def age(value: str) -> int | None:
    """An age cell (``55``, ``55.0``) as whole years; blank or not a number as None."""
    try:
        years = float(value)
    except ValueError:
        return None
    return int(years) if 0 <= years < 150 else None


def sex(value: str) -> str | None:
    """``male`` / ``female`` from the spellings the publishers use; anything else None."""
    text = value.strip().lower()
    return {"m": "male", "f": "female"}.get(text, text if text in ("male", "female") else None)


def normalise_label(text: str) -> str:
    """A class name as compared across spellings and datasets: lower case, letters and digits
    only, a trailing "photos" (Dermnet's folder names) and plural "s" dropped (HAM10000's
    "Actinic Keratoses" ~ ISIC 2019's "Actinic Keratosis" does not match; "Vascular lesions" ~
    "Vascular Lesion" does).

    >>> normalise_label("Acne and Rosacea Photos"), normalise_label("Non-Malignant")
    ('acneandrosacea', 'nonmalignant')
    """
    key = re.sub(r"[^a-z0-9]+", "", text.lower())
    key = key[: -len("photos")] if key.endswith("photos") and len(key) > 6 else key
    return key[:-1] if key.endswith("s") and len(key) > 3 else key


def image_row(report: BuildReport, display: str, rowno: int, files: ImageFiles, name: str) -> Path | None:
    """The image file ``name`` under SOURCE, or None with the row listed as not written."""
    if not name:
        report.skip(display, rowno, "image", name, "blank image name")
        return None
    if "/" in name or "\\" in name or name in (".", ".."):
        report.skip(display, rowno, "image", name, "image name with a folder part: give the file name only")
        return None
    if name in files.ambiguous or Path(name).stem in files.ambiguous:
        report.warn(display, rowno, "image", name, "several files have this name under SOURCE; the first is used")
    path = files.find(name)
    if path is None:
        report.skip(display, rowno, "image", name, "image file not found under SOURCE")
    return path
