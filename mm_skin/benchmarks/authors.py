"""The MM-Skin authors' classification label files (``Dataframe/test/classification/*_test.csv``).

Columns ``image,atributes,categories`` (``categories`` a Python list literal such as
``['Nevus']``; ``atributes`` always ``[]``; Patch16 adds ``set``). ``image`` is a path such as
``HAM10000/ISIC2018_Task3_Test_Images/ISIC_0034524.jpg`` relative to the authors' data root.
A row is matched to the benchmark's own rows by image id (the file stem), else to a file under
SOURCE: the path itself, the path without its leading folders one at a time, then the file name
anywhere (every candidate confined to SOURCE by :mod:`mm_skin.paths`).
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from mm_skin.benchmarks.spec import ImageFiles, read_table
from mm_skin.paths import relative_parts, resolve_inside
from mm_skin.report import BuildReport, ReleaseError


@dataclasses.dataclass(frozen=True)
class TestEntry:
    """One labelled row of an authors' file: the image path as written, its first category."""

    image: str
    category: str
    row: int

    @property
    def image_id(self) -> str:
        """The file stem: the id the publishers' files use (``ISIC_0034524``, ``000001``)."""
        return PurePosixPath(self.image.replace("\\", "/")).stem

    @property
    def image_ids(self) -> tuple[str, str]:
        """The ids a download's row may have: the stem, and ``<folder>/<stem>`` (Dermnet's class folders)."""
        path = PurePosixPath(self.image.replace("\\", "/"))
        return self.image_id, f"{path.parent.name}/{path.stem}"


def parse_categories(cell: str) -> list[str] | None:
    """The categories of a cell (``['Nevus']`` or a bare ``Nevus``); None when it is not a list of strings."""
    text = cell.strip()
    if not text.startswith("["):
        return [text] if text else []
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None
    return [v.strip() for v in value if v.strip()]


def _one_hot(cells: dict[str, str]) -> list[str] | None:
    """The columns marked 1 of a one-hot row (ISIC's ground-truth files), None if a cell is not a number."""
    hot = []
    for column, cell in cells.items():
        if column in ("image", "categories"):
            continue
        try:
            if float(cell) == 1.0:
                hot.append(column)
        except ValueError:
            return None
    return hot


def read_test_file(path: Path, report: BuildReport) -> Iterator[TestEntry]:
    """The labelled rows of an authors' file, or of an official one-hot ground truth (``image``
    plus one 0/1 column per class, e.g. ``ISIC2018_Task3_Test_GroundTruth.csv``: the class is the
    column marked 1); rows with no usable category are listed as not written.

    Multi-label rows use the FIRST category (warned); an image listed again is listed as not
    written, with both labels when they differ (the authors' Dermnet file has 26 such images).
    """
    display = f"--test-file {path.name}"
    aliases = {"image": ("image", "imagepath", "path", "file"), "categories": ("categories", "category", "label")}
    seen: dict[str, tuple[int, str]] = {}
    for rowno, cells in read_table(report, path, display, aliases, ["image"], role="test split", keep_others=True):
        categories = parse_categories(cells["categories"]) if "categories" in cells else _one_hot(cells)
        if categories is None:
            report.skip(display, rowno, "categories", cells.get("categories", cells),
                        "not a list of strings like ['Nevus'] (nor a one-hot row of 0/1 class columns)")
            continue
        if not categories:
            report.skip(display, rowno, "categories", cells.get("categories", ""), "no category")
            continue
        if len(categories) > 1:
            report.warn(display, rowno, "categories", categories, "several categories: the first is used")
        entry = TestEntry(cells["image"], categories[0], rowno)
        key = "/".join(PurePosixPath(entry.image.replace("\\", "/")).parts[-2:])
        if key in seen:
            first_row, first = seen[key]
            why = (f"label conflict: the image is also row {first_row} as {first!r}" if first != entry.category
                   else f"repeats row {first_row}")
            report.skip(display, rowno, "image", entry.image, why)
            continue
        seen[key] = (rowno, entry.category)
        yield entry


def locate(source: Path, files: ImageFiles, image: str) -> Path | None:
    """The file an authors' path names under ``source``, or None; :class:`UnsafePathError` for a
    path that would leave it (absolute, ``..``, a symlink out): nothing outside is opened."""
    parts = relative_parts(image, what="--test-file image paths", where="SOURCE")
    for start in range(len(parts)):
        candidate = resolve_inside(source, "/".join(parts[start:]), what="--test-file image paths", where="SOURCE")
        if candidate.is_file() and not candidate.is_symlink():
            return candidate
    return files.find(parts[-1])


def require_test_file(name: str, test_file: str | None) -> Path:
    """The authors' label file a layout without labels of its own needs (one-line error when absent)."""
    if not test_file:
        raise ReleaseError(f"{name}: SOURCE is a folder of images and its labels come from the authors' file; "
                           f"pass --test-file {name.upper()}_test.csv (columns image, atributes, categories)")
    return Path(test_file)
