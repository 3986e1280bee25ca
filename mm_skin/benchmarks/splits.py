"""Which split each row goes to: the authors' / official test file, or a seeded group split.

- ``--test-file``: its rows are the test split, its label spellings mapped to the default label
  set's classes (:func:`class_mapper`); rows it names that the download lacks in its metadata
  but holds as image files are added with the test file's label only. Rows of the download that
  share a lesion / patient with a test row are MOVED to test (listed in the report), so that no
  lesion is on both sides. Everything else is train.
- Otherwise each image draws a number from a hash of ``seed`` and its id (stable under row
  order): below ``test_fraction`` -> test, then ``validation_fraction`` -> validation, else
  train. A lesion's / patient's images all follow its first image's draw; rows whose own draw
  differed are counted as moved.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from mm_skin.benchmarks.authors import TestEntry, locate
from mm_skin.benchmarks.spec import Benchmark, ImageFiles, Row, normalise_label
from mm_skin.paths import UnsafePathError
from mm_skin.report import BuildReport

#: spellings of test files that are not a class name (normalised -> a spelling of the class):
#: the authors' DDI file, and the class codes of ISIC's one-hot ground truths (HAM10000 / ISIC 2018
#: "AKIEC" is HAM10000's "Actinic Keratoses", ISIC 2019's "AK" its "Actinic Keratosis")
LABEL_ALIASES = {"nonmalignant": "benign", "notmalignant": "benign", "mel": "Melanoma", "nv": "Nevus",
                 "bcc": "Basal Cell Carcinoma", "akiec": "Actinic Keratoses", "ak": "Actinic Keratosis",
                 "bkl": "Benign Keratosis", "df": "Dermatofibroma", "vasc": "Vascular Lesion",
                 "scc": "Squamous Cell Carcinoma"}


@dataclasses.dataclass
class SplitResult:
    """Rows per split and what the split did (for the report)."""

    splits: dict[str, list[Row]]
    method: str
    moved: list[str] = dataclasses.field(default_factory=list)  # image ids moved to keep a group on one side


def class_mapper(classes: Sequence[str]) -> dict[str, str]:
    """Normalised spelling -> class (see :func:`~mm_skin.benchmarks.spec.normalise_label`)."""
    mapping = {normalise_label(c): c for c in classes}
    mapping.update({k: mapping[normalise_label(v)] for k, v in LABEL_ALIASES.items()
                    if normalise_label(v) in mapping and k not in mapping})
    return mapping


def _draw(seed: int, image_id: str) -> float:
    digest = hashlib.sha256(f"{seed}:{image_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def seeded_split(rows: Sequence[Row], group: str | None, seed: int, test_fraction: float,
                 validation_fraction: float) -> SplitResult:
    """A reproducible train / validation / test split keeping each ``group`` value on one side."""
    def side(u: float) -> str:
        return "test" if u < test_fraction else "validation" if u < test_fraction + validation_fraction else "train"

    chosen: dict[str, str] = {}
    splits: dict[str, list[Row]] = {"train": [], "validation": [], "test": []}
    moved = []
    for row in rows:
        own = side(_draw(seed, row.image_id))
        key = getattr(row, group) if group else None
        where = chosen.setdefault(key, own) if key else own
        if where != own:
            moved.append(row.image_id)
        splits[where].append(row)
    method = f"seeded split (seed {seed}, test {test_fraction:g}, validation {validation_fraction:g}" + (
        f", each {group} on one side)" if group else ", by image)")
    return SplitResult({k: v for k, v in splits.items() if v}, method, moved)


def test_file_split(benchmark: Benchmark, rows: Sequence[Row], entries: Iterable[TestEntry], source: Path,
                    files: ImageFiles, report: BuildReport, display: str,
                    classes: Sequence[str] | None) -> SplitResult:
    """Test = the test file's rows (labels mapped to ``classes``; None: taken as written)."""
    by_id = {row.image_id: row for row in rows}
    mapper = class_mapper(classes) if classes is not None else None
    test: list[Row] = []
    found_ids: set[str] = set()
    for entry in entries:
        label = entry.category if mapper is None else mapper.get(normalise_label(entry.category))
        if label is None:
            report.skip(display, entry.row, "categories", entry.category,
                        f"label not mapped to a {benchmark.default} class ({', '.join(classes or [])})")
            continue
        row = next((by_id.pop(key) for key in entry.image_ids if key in by_id), None)
        if row is None:
            try:
                path = locate(source, files, entry.image)
            except UnsafePathError as reason:
                report.skip(display, entry.row, "image", entry.image, f"image path refused: {reason}")
                continue
            if path is None:
                report.skip(display, entry.row, "image", entry.image, "image file not found under SOURCE")
                continue
            row = Row(path, entry.image_id, {}, display, entry.row)
            if entry.image_id in found_ids:
                report.skip(display, entry.row, "image", entry.image, "another test row has this image id")
                continue
        elif row.labels.get(benchmark.default) not in (None, label):
            report.warn(display, entry.row, "categories", entry.category,
                        f"label conflict: {row.file} row {row.row} says {row.labels[benchmark.default]!r}; "
                        "the test file's label is written")
        row.labels = {**row.labels, benchmark.default: label}
        found_ids.add(row.image_id)
        test.append(row)
    return _move_groups(benchmark.group, test, list(by_id.values()), display)


def _move_groups(group: str | None, test: list[Row], rest: list[Row], display: str) -> SplitResult:
    """Rows sharing ``group`` with a test row join test; the rest is train."""
    taken = {getattr(r, group) for r in test if getattr(r, group)} if group else set()
    moved = [r for r in rest if group and getattr(r, group) in taken]
    train = [r for r in rest if not (group and getattr(r, group) in taken)]
    splits = {"train": train, "test": test + moved}
    return SplitResult({k: v for k, v in splits.items() if v}, f"test split from {display}",
                       [r.image_id for r in moved])


def folder_split(rows: Sequence[Row]) -> SplitResult:
    """The publisher's own split (Dermnet's train/ and test/ folders)."""
    splits: dict[str, list[Row]] = {}
    for row in rows:
        splits.setdefault(row.split or "train", []).append(row)
    return SplitResult(splits, "the publisher's folders (train/, test/)")


def counts(result: SplitResult) -> Mapping[str, int]:
    """Rows per split."""
    return {k: len(v) for k, v in result.splits.items()}
