"""Read the authors' classification label files (``Dataframe/test/classification/*_test.csv``).

The family: one row per image, a column with the image path relative to the benchmark's image
root (``image``), an attribute column (``atributes`` sic, or ``attributes``; ignored) and the
label column (``categories``) holding a Python list literal such as ``['Nevus']``. Files of the
family differ in spelling and case of the column names and carry extra columns, so columns are
matched by :func:`mm_skin.columns.match_columns` (the builder's matcher: case, spaces, ``_`` and
``-`` ignored) against the aliases below, and extra columns are ignored. A header naming a column
twice is refused, as in the builder. Files are UTF-8 (a BOM is allowed). A label cell may also be
a bare string (``Nevus``).

Rules, applied the same way to every file:

- multi-label rows (a list with more than one category): the FIRST listed category is used; the
  rows are counted and listed (``multi_label_rows``) in the results;
- rows with no category (``[]`` or blank): not evaluated, listed in ``skipped_rows`` with the reason;
- a label cell that is neither a list literal of strings nor a bare string: an error naming the
  file, row and value;
- the same image listed with different labels: every row is still evaluated (as the authors'
  protocol does), but the conflict is counted and listed (``conflicting_labels``, naming the rows)
  in results.json and the command prints a warning naming the first two rows; fix the file;
- class order: ``classes`` when given (labels outside it are an error), else the labels sorted
  case-insensitively (for HAM10000 that is the authors' alphabetical list).
"""

from __future__ import annotations

import ast
import csv
import io
import posixpath
from dataclasses import dataclass, field
from pathlib import Path

from mm_skin.columns import MATCH_RULE, duplicate_columns_problem, match_columns
from mm_skin.paths import UnsafePathError, resolve_inside
from skinvl.evaluation.predictions import read_text

IMAGE_COLUMNS = ("image", "img", "imagepath", "path", "file", "filename", "imagename", "imagefile", "filepath")
LABEL_COLUMNS = ("categories", "category", "labels", "label", "class", "classes", "diagnosis", "dx", "target")


class LabelFileError(ValueError):
    """A label CSV that cannot be read; the message names the file, row, value and fix."""


@dataclass(frozen=True)
class LabeledImage:
    """One evaluated row: ``image`` (relative path), its ``label``, and the CSV ``row`` (1-based)."""

    image: str
    label: str
    row: int


@dataclass
class LabelFile:
    """A parsed label CSV: evaluated rows, class order and what the family rules did."""

    path: Path
    rows: list[LabeledImage]
    classes: list[str]
    multi_label_rows: list[dict] = field(default_factory=list)
    skipped_rows: list[dict] = field(default_factory=list)
    conflicting_labels: list[dict] = field(default_factory=list)

    def summary(self) -> dict:
        """Counts and lists for results.json."""
        return {
            "file": str(self.path),
            "rows_evaluated": len(self.rows),
            "multi_label_rule": "first listed category",
            "multi_label_count": len(self.multi_label_rows),
            "multi_label_rows": self.multi_label_rows,
            "skipped_count": len(self.skipped_rows),
            "skipped_rows": self.skipped_rows,
            "conflicting_labels_count": len(self.conflicting_labels),
            "conflicting_labels": self.conflicting_labels,
        }

    def warnings(self) -> list[str]:
        """One line per problem a user must hear about (the lists are in :meth:`summary`)."""
        if not self.conflicting_labels:
            return []
        first = self.conflicting_labels[0]
        a = first["rows"][0]
        b = next(r for r in first["rows"] if r["label"] != a["label"])
        return [f"{self.path}, rows {a['row']} and {b['row']}: image {first['image']!r} is labelled {a['label']!r} "
                f"and {b['label']!r} ({len(self.conflicting_labels)} such image(s), listed in results.json as "
                "conflicting_labels); both rows are evaluated, so one always counts as wrong: fix the file."]


def _find_columns(fieldnames: list[str], path: Path) -> tuple[str, str]:
    """The image and label column names (one matcher and one duplicate rule with the builder)."""
    problem = duplicate_columns_problem(fieldnames)
    if problem:
        raise LabelFileError(f"{path}, header: {problem}.")
    found = match_columns(fieldnames, {"image": IMAGE_COLUMNS, "label (categories)": LABEL_COLUMNS})
    for what, aliases in (("image", IMAGE_COLUMNS), ("label (categories)", LABEL_COLUMNS)):
        if what not in found:
            raise LabelFileError(
                f"{path}: no {what} column; found {fieldnames}. Expected one of {list(aliases)} "
                f"({MATCH_RULE}), as in the authors' files (image, atributes, categories)."
            )
    return fieldnames[found["image"]], fieldnames[found["label (categories)"]]


def image_key(image: str) -> str:
    """An image path as written in a label file, normalised: "a/x.png", "./a/x.png" and
    "a\\x.png" name one file."""
    return posixpath.normpath(image.replace("\\", "/"))


def _conflicts(rows: list[LabeledImage]) -> list[dict]:
    """Images listed more than once with different labels: ``{"image", "rows": [{"row", "label"}]}``."""
    by_image: dict[str, list[LabeledImage]] = {}
    for r in rows:
        by_image.setdefault(image_key(r.image), []).append(r)
    return [{"image": same[0].image, "rows": [{"row": r.row, "label": r.label} for r in same]}
            for same in by_image.values() if len({r.label for r in same}) > 1]


def _parse_categories(cell: str, path: Path, row: int) -> list[str]:
    text = (cell or "").strip()
    if not text:
        return []
    if text.startswith("["):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError) as e:
            raise LabelFileError(
                f"{path}, row {row}: categories value {text!r} is not a Python list literal "
                f"({e.__class__.__name__}). Write it like ['Nevus'] or ['Melanoma', 'Nevus']."
            ) from e
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise LabelFileError(
                f"{path}, row {row}: categories value {text!r} must be a list of strings."
            )
        return [v.strip() for v in value if v.strip()]
    return [text]


def read_label_csv(path: str | Path, classes: list[str] | None = None) -> LabelFile:
    """Read one label CSV of the authors' family (see the module docstring for the rules).

    >>> labels = read_label_csv("HAM10000_test.csv")  # doctest: +SKIP
    >>> labels.classes[:2], labels.rows[0].label  # doctest: +SKIP
    (['Actinic Keratoses', 'Basal Cell Carcinoma'], 'Nevus')
    """
    path = Path(path)
    if not path.is_file():
        raise LabelFileError(f"{path}: no such label file.")
    reader = csv.DictReader(io.StringIO(read_text(path, LabelFileError), newline=""))
    image_col, label_col = _find_columns(list(reader.fieldnames or []), path)
    rows: list[LabeledImage] = []
    multi: list[dict] = []
    skipped: list[dict] = []
    for i, record in enumerate(reader, start=1):
        image = (record.get(image_col) or "").strip()
        labels = _parse_categories(record.get(label_col) or "", path, i)
        if not image:
            skipped.append({"row": i, "image": image, "reason": "blank image path"})
            continue
        if not labels:
            skipped.append({"row": i, "image": image, "reason": "no category"})
            continue
        if len(labels) > 1:
            multi.append({"row": i, "image": image, "categories": labels, "used": labels[0]})
        rows.append(LabeledImage(image=image, label=labels[0], row=i))
    if not rows:
        raise LabelFileError(f"{path}: no labelled rows (skipped {len(skipped)}).")
    if classes:
        unknown = [(r.row, r.label) for r in rows if r.label not in classes]
        if unknown:
            row, label = unknown[0]
            raise LabelFileError(
                f"{path}, row {row}: label {label!r} is not one of the classes {classes} "
                f"({len(unknown)} such rows). Add it to --classes or fix the file."
            )
        ordered = list(classes)
    else:
        ordered = sorted({r.label for r in rows}, key=lambda s: (s.lower(), s))
    return LabelFile(path=path, rows=rows, classes=ordered, multi_label_rows=multi, skipped_rows=skipped,
                     conflicting_labels=_conflicts(rows))


def resolve_images(labels: LabelFile, root: str | Path, limit: int | None = None) -> list[tuple[LabeledImage, Path]]:
    """Pair the (first ``limit``) rows with image files under ``root``; error if any is missing."""
    root = Path(root).resolve()
    rows = labels.rows if limit is None else labels.rows[:limit]
    pairs = []
    for r in rows:  # absolute, "../" or a symlink out of the image root: refused, never read
        try:
            pairs.append((r, resolve_inside(root, r.image, what="label CSV image paths", where="--images")))
        except UnsafePathError as reason:
            raise LabelFileError(
                f"{labels.path}, row {r.row}: image path {r.image!r} leads outside {root}: {reason}."
            ) from None
    missing = [(r, p) for r, p in pairs if not p.is_file()]
    if missing:
        r, p = missing[0]
        raise LabelFileError(
            f"{labels.path}, row {r.row}: image {r.image!r} not found at {p} ({len(missing)} of "
            f"{len(pairs)} images missing). --images must be the folder the paths in the CSV are "
            "relative to."
        )
    return pairs
