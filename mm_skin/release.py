"""Locate, read and validate the authors' release into a :class:`ReleasePlan` (no image is read).

The release is caption.csv + VQA.csv + dataset/*.png (at SOURCE or SOURCE/MM-SkinQA), the
official test CSV ``Dataframe/test/vqa/MM-Skin_test.csv`` and, optionally, the LLaVA JSON
``Dataframe/Pretrain/vqa_MM.json``. Every row is checked here; problems that stop the build raise
:class:`~mm_skin.report.ReleaseError`, row-level problems go into the plan's report.

>>> plan = load_release("examples/mm-skin-sample")  # doctest: +SKIP
>>> plan.splits("vqa")  # doctest: +SKIP
['train', 'test']
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from mm_skin.columns import MATCH_RULE, duplicate_columns_problem, match_columns
from mm_skin.demographics import parse_age_column, parse_age_sex, parse_sex_column
from mm_skin.paths import UnsafePathError, resolve_inside
from mm_skin.report import BuildReport, ReleaseError, short_repr, unreadable_file
from mm_skin.schema import (
    INSTRUCT_DEFAULT_RELATIVE,
    MODALITIES,
    MODALITY_ALIASES,
    SPLITS,
    SYNTHETIC_MARKER,
    TEST_CSV_RELATIVE,
    normalize_modality,
    textbook_of,
)

# --------------------------------------------------------------------------------------------
# CSV files: columns matched by alias
# --------------------------------------------------------------------------------------------

# canonical column -> accepted spellings (after mm_skin.columns.norm_col); first found wins
_COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "image": ("image", "imagepath", "img", "imgpath"),
    "caption": ("cleanedcaption", "caption"),
    "modality": ("modality",),
    "question": ("question",),
    "answer": ("answer",),
    "age": ("age",),
    "sex": ("sex", "gender"),
}
QA_FIELDS = ("image", "question", "answer")
CAPTION_FIELDS = ("image", "caption", "modality")

#: The tiny synthetic release in the authors' layout (``mm-skin build --sample``): examples/ in a
#: source checkout, the package's ``sample/`` folder in a wheel (pyproject.toml's package-dir).
SAMPLE_RELEASE: Path = next(
    (d for d in (Path(__file__).resolve().parent.parent / "examples" / "mm-skin-sample",
                 Path(__file__).resolve().parent / "sample") if d.is_dir()),
    Path(__file__).resolve().parent / "sample",
)  # fmt: skip


def _csv_rows(path: Path, display: str) -> list[list[str]]:
    """Every row of a CSV file (UTF-8, optional BOM); one-line :class:`ReleaseError` otherwise."""
    rows: list[list[str]] = []
    start_line = 1  # physical line where the row being read starts (a quoted field spans lines)
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            for row in reader:
                rows.append(row)
                start_line = reader.line_num + 1
    except UnicodeDecodeError as e:
        raise ReleaseError(f"{display}: not UTF-8 text ({e}); re-save the file as UTF-8") from None
    except csv.Error as e:
        raise ReleaseError(
            f"{display} row {len(rows) + 1} (line {start_line}): {e} (value starts {short_repr(_line_at(path, start_line))}); "
            "check that row for an unbalanced double quote (it makes the rest of the file one field) "
            "or shorten the field"
        ) from None
    except OSError as e:
        raise unreadable_file(display, e) from None
    return rows


def _line_at(path: Path, line: int) -> str:
    """The text of physical line ``line`` (1-based) of a file, for an error message."""
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as f:
        for i, text in enumerate(f, 1):
            if i == line:
                return text[:200]
    return ""


def read_header(path: Path, display: str, aliases: Mapping[str, Sequence[str]],
                required: Sequence[str]) -> tuple[list[str], dict[str, int], list[list[str]]]:
    """Read a CSV (UTF-8, optional BOM) and locate its columns by alias; raise naming what was found.

    Returns the header, canonical column -> index, and the rows after the header. A header that
    names one column twice (after normalisation) is refused: which of the two holds the data is a
    guess. Used for the release's files and the classification benchmarks' alike.
    """
    rows = _csv_rows(path, display)
    if not rows:
        raise ReleaseError(f"{display}: the file is empty (expected a header row with {', '.join(required)})")
    header = rows[0]
    problem = duplicate_columns_problem(header)
    if problem:
        raise ReleaseError(f"{display} row 1: {problem}")
    found = match_columns(header, aliases)
    missing = [c for c in required if c not in found]
    if missing:
        raise ReleaseError(
            f"{display}: missing column(s) {', '.join(repr(m) for m in missing)}; "
            f"columns found: {', '.join(repr(h) for h in header)}. "
            f"Accepted spellings: "
            + "; ".join(f"{m}: {', '.join(aliases[m])}" for m in missing)
            + f" ({MATCH_RULE})."
        )
    return header, found, rows[1:]


def read_csv(path: Path, display: str, required: Sequence[str], optional: Sequence[str] = ()) -> tuple[dict[str, int], list[list[str]]]:
    """The release's CSVs: :func:`read_header` with the release's column spellings."""
    _, found, rows = read_header(path, display, {c: _COLUMN_ALIASES[c] for c in (*required, *optional)}, required)
    return found, rows


def _cell(row: list[str], index: int) -> str:
    return row[index].strip() if index < len(row) else ""


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


def parse_modality_map(items: Iterable[str] | Mapping[str, str]) -> dict[str, str]:
    """Parse ``VALUE=MODALITY`` pairs (``--modality-map``), or a ``{VALUE: MODALITY}`` dict, into
    a normalised lookup.

    >>> parse_modality_map(["HE slide=pathology"]) == parse_modality_map({"HE slide": "pathology"})
    True
    >>> parse_modality_map(["HE slide=pathology"])
    {'he slide': 'pathology'}
    """
    if isinstance(items, Mapping):
        items = [f"{k}={v}" for k, v in items.items()]
    mapping: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise ReleaseError(f"--modality-map {item!r}: expected VALUE=MODALITY, e.g. 'derm img=dermoscopic'")
        value, target = item.rsplit("=", 1)
        target_norm = normalize_modality(target)
        canonical = target_norm if target_norm in MODALITIES else MODALITY_ALIASES.get(target_norm)
        if canonical is None:
            raise ReleaseError(
                f"--modality-map {item!r}: {target!r} is not a modality; use one of {', '.join(MODALITIES)}"
            )
        mapping[normalize_modality(value)] = canonical
    return mapping


def image_key(value: str) -> str:
    """Normalised release-relative path: 'dataset/bk1_2.png' (a bare file name gets 'dataset/')."""
    v = value.strip().replace("\\", "/")
    while v.startswith("./"):
        v = v[2:]
    if "/" not in v:
        v = "dataset/" + v
    return v


# --------------------------------------------------------------------------------------------
# The release plan: every row validated, grouped by image
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class CaptionRow:
    """One caption.csv row that will be written."""

    file: str
    row: int
    caption: str
    modality: int
    age: int | None
    sex: str | None


@dataclasses.dataclass
class QARow:
    """One question/answer row (VQA.csv or the test CSV) that will be written."""

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
        """The modality index of the image's first caption row (None without a caption)."""
        return self.captions[0].modality if self.captions else None

    def rows(self) -> Iterator[tuple[str, int]]:
        """``(file, row)`` of every input row that uses this image."""
        for c in self.captions:
            yield c.file, c.row
        for rows in self.qa.values():
            for r in rows:
                yield r.file, r.row


@dataclasses.dataclass
class InstructFile:
    """A LLaVA JSON file for the ``instruct`` config and its name in the report."""

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
        splits = list(SPLITS) if self.has_test else ["train"]
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
        files["test"] = find_test_csv((src, root.parent, root))
    return files


def find_test_csv(bases: Iterable[Path]) -> Path | None:
    """The official test CSV (``Dataframe/test/vqa/MM-Skin_test.csv``) under the first base that
    has one; failing that, the only ``*_test.csv`` in such a ``Dataframe/test/vqa/`` folder (a
    renamed copy, or the synthetic sample's). Several candidates are ambiguous: an error."""
    bases = list(bases)
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


def find_synthetic_marker(bases: Iterable[Path]) -> str | None:
    """The description in a :data:`~mm_skin.schema.SYNTHETIC_MARKER` file (a synthetic stand-in for
    the release, such as examples/mm-skin-sample), or None for a real release."""
    for base in bases:
        marker = base / SYNTHETIC_MARKER
        if marker.is_file():
            try:
                data = json.loads(marker.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise ReleaseError(f"{marker}: not a readable JSON file ({e}); fix or delete it") from None
            if isinstance(data, dict) and data.get("synthetic") is True:
                return str(data.get("description") or "a synthetic stand-in for the MM-Skin release")
    return None


def _modality_lookup(name: str, cols: dict[str, int], rows: list[list[str]], user_map: dict[str, str],
                     report: BuildReport) -> dict[str, int]:
    """Normalised modality string -> modality index, for every value in caption.csv.

    Raises :class:`ReleaseError` listing every unrecognised value with its row count.
    """
    counts: collections.Counter[str] = collections.Counter()
    raw_values: dict[str, str] = {}
    for row in rows:
        raw = _cell(row, cols["modality"])
        if raw:
            norm = normalize_modality(raw)
            counts[norm] += 1
            raw_values.setdefault(norm, raw)
    unmapped = {v: n for v, n in counts.items() if v not in user_map and v not in MODALITY_ALIASES}
    if unmapped:
        listing = "\n".join(f"  {raw_values[v]!r}: {n} rows" for v, n in sorted(unmapped.items(), key=lambda kv: -kv[1]))
        example = next(iter(unmapped))
        raise ReleaseError(
            f"{name}: modality value(s) not recognised:\n{listing}\n"
            f"Map each with --modality-map VALUE=MODALITY (MODALITY: {', '.join(MODALITIES)}), "
            f"e.g. --modality-map '{raw_values[example]}=dermoscopic'."
        )
    lookup = {}
    for v, n in counts.items():
        target = user_map.get(v) or MODALITY_ALIASES[v]
        report.modality_values[raw_values[v]] = {"modality": target, "rows": n}
        lookup[v] = MODALITIES.index(target)
    return lookup


class _PlanReader:
    """The rows of the release's files, read in order into image entries and the report."""

    def __init__(self, source: Path, root: Path) -> None:
        self.source, self.root = source, root
        self.report = BuildReport()
        self.report.synthetic = find_synthetic_marker((source, root, root.parent))
        self.entries: dict[str, ImageEntry] = {}
        self.test_keys: set[str] = set()
        self.test_rows: set[tuple[str, str, str]] = set()

    def entry(self, key: str, path: Path, split: str) -> ImageEntry:
        """The entry of image ``key`` (real path ``path``), created in ``split`` on first use."""
        e = self.entries.get(key)
        if e is None:
            image_id = Path(key).stem
            e = ImageEntry(key=key, path=path, image_id=image_id, textbook_id=textbook_of(image_id), split=split)
            self.entries[key] = e
        return e

    def image_path(self, name: str, rowno: int, value: str) -> tuple[str, Path] | None:
        """``(key, real path)`` of a row's image, or None after reporting the row as not written
        when the path would leave the release (:func:`~mm_skin.paths.resolve_inside`)."""
        key = image_key(value)
        try:
            return key, resolve_inside(self.root, key)
        except UnsafePathError as e:
            self.report.skip(name, rowno, "image", value, f"unsafe image path: {e}")
            return None

    def split_of(self, key: str) -> str:
        """``test`` for images the official test CSV names, else ``train``."""
        return "test" if key in self.test_keys else "train"

    def open_csv(self, path: Path, role: str, required: Sequence[str], optional: Sequence[str] = ()
                 ) -> tuple[str, dict[str, int], list[list[str]]]:
        """Record one CSV in the report and read it: ``(name, columns, rows)``."""
        name = _display(path, self.source)
        cols, rows = read_csv(path, name, required, optional)
        self.report.add_file(name, role, path)
        return name, cols, rows

    def open_qa(self, path: Path, role: str) -> tuple[str, Iterator[tuple[int, Path, tuple[str, str, str]]]]:
        """A QA CSV's name and its usable rows as ``(row number, image path, (image key, question, answer))``."""
        name, cols, rows = self.open_csv(path, role, QA_FIELDS)

        def pairs() -> Iterator[tuple[int, Path, tuple[str, str, str]]]:
            for rowno, _, (image, question, answer) in _filled_rows(self.report, name, cols, rows, QA_FIELDS):
                found = self.image_path(name, rowno, image)
                if found is not None:
                    yield rowno, found[1], (found[0], question, answer)

        return name, pairs()

    def read_test(self, path: Path) -> None:
        """The official test split: its rows ARE the test split, in file order, duplicates kept."""
        synthetic = self.report.synthetic is not None
        name, pairs = self.open_qa(path, "VQA test split (synthetic sample)" if synthetic else "official VQA test split")
        self.report.test_file = name
        kind = "synthetic sample's test split" if synthetic else "official test split"
        seen: dict[tuple[str, str, str], int] = {}
        for rowno, path, ident in pairs:
            key, question, answer = ident
            if ident in seen:
                # The official benchmark has exact repeats (3 in MM-Skin_test.csv); the paper's
                # numbers include them, so they stay in the test split, flagged.
                self.report.warn(name, rowno, "question", question, f"duplicate of row {seen[ident]} (kept: {kind})")
            else:
                seen[ident] = rowno
            self.test_keys.add(key)
            self.test_rows.add(ident)
            self.entry(key, path, "test").qa.setdefault("test", []).append(QARow(name, rowno, question, answer))
        self.report.notes.append(
            f"test split = the synthetic sample's test CSV {name} (official format, not the authors' split); train = every other row"
            if synthetic else f"test split = the official test CSV {name}; train = every other row")

    def read_captions(self, path: Path, user_map: dict[str, str]) -> None:
        """caption.csv: one caption row per (image, caption, modality); age/sex columns win over the text."""
        name, cols, rows = self.open_csv(path, "captions (MM-Skin-C, MM-Skin-D)", CAPTION_FIELDS, ["age", "sex"])
        modality_of = _modality_lookup(name, cols, rows, user_map, self.report)
        seen: dict[tuple[str, str, int], int] = {}
        for rowno, row, (image, caption, raw_mod) in _filled_rows(self.report, name, cols, rows, CAPTION_FIELDS):
            modality = modality_of[normalize_modality(raw_mod)]
            found = self.image_path(name, rowno, image)
            if found is None:
                continue
            key, path = found
            ident = (key, caption, modality)
            if ident in seen:
                self.report.skip(name, rowno, "image", image, f"duplicate of row {seen[ident]}")
                continue
            seen[ident] = rowno
            age, sex = parse_age_sex(caption)
            if "age" in cols and _cell(row, cols["age"]):
                age = parse_age_column(_cell(row, cols["age"]))
            if "sex" in cols and _cell(row, cols["sex"]):
                sex = parse_sex_column(_cell(row, cols["sex"]))
            e = self.entry(key, path, self.split_of(key))
            if e.captions and e.captions[0].modality != modality:
                first = e.captions[0]
                self.report.warn(name, rowno, "modality", raw_mod, f"image already has modality {MODALITIES[first.modality]} (row {first.row})")
            e.captions.append(CaptionRow(name, rowno, caption, modality, age, sex))

    def read_vqa(self, path: Path) -> None:
        """VQA.csv: rows that are official test rows were written from the test CSV."""
        name, pairs = self.open_qa(path, "VQA pairs (MM-Skin-O)")
        seen: dict[tuple[str, str, str], int] = {}
        for rowno, path, ident in pairs:
            key, question, answer = ident
            if ident in self.test_rows:  # written from the test CSV (repeats included, as there)
                self.report.files[name].rows_in_test_split += 1
                continue
            if ident in seen:
                self.report.skip(name, rowno, "question", question, f"duplicate of row {seen[ident]}")
                continue
            seen[ident] = rowno
            self.entry(key, path, self.split_of(key)).qa.setdefault("train", []).append(QARow(name, rowno, question, answer))

    def add_caveats(self) -> None:
        """Per-image caveats that keep the row, and a note on test images with train QA pairs."""
        for e in self.entries.values():
            if e.textbook_id is None:
                file, row = next(e.rows())
                self.report.warn(file, row, "image", e.key, "unknown textbook: the file name does not start with bk1_..bk15_ (textbook_id left empty)")
            if e.qa and not e.captions:
                file, row = next(e.rows())
                self.report.warn(file, row, "image", e.key, "no caption.csv row for this image: modality left empty")
        overlap = sum(1 for e in self.entries.values() if e.key in self.test_keys and e.qa.get("train"))
        if overlap:
            self.report.notes.append(
                f"{overlap} test images also have (different) QA pairs in the train split: the test split is by QA pair, not by image"
            )

    def instruct_files(self, instruct_json: Sequence[str | os.PathLike[str]] | None) -> list[InstructFile]:
        """The LLaVA JSON files given, or the release's own ``Dataframe/Pretrain/vqa_MM.json``."""
        if instruct_json is None:
            for base in (self.source, self.root.parent):
                if (base / INSTRUCT_DEFAULT_RELATIVE).is_file():
                    instruct_json = [base / INSTRUCT_DEFAULT_RELATIVE]
                    self.report.notes.append(f"instruct config from {_display(base / INSTRUCT_DEFAULT_RELATIVE, self.source)} (found in the release)")
                    break
        files = []
        for p in instruct_json or []:
            path = Path(p)
            if not path.is_file():
                raise ReleaseError(f"--instruct-json {path}: no such file")
            name = _display(path, self.source)
            self.report.add_file(name, "LLaVA instruction data (instruct config)", path)
            files.append(InstructFile(path, name))
        return files


def load_release(
    source: str | os.PathLike[str],
    *,
    test_csv: str | os.PathLike[str] | None = None,
    instruct_json: Sequence[str | os.PathLike[str]] | None = None,
    modality_map: dict[str, str] | None = None,
) -> ReleasePlan:
    """Read and validate the release's CSV files into a :class:`ReleasePlan` (no image is read).

    Raises :class:`ReleaseError` for problems that stop the build (missing file or column,
    unmapped modality values); row-level problems go into ``plan.report``. ``modality_map`` is
    :func:`parse_modality_map`'s normalised lookup.
    """
    files = locate_release(source, test_csv)
    root, caption_csv, vqa_csv, official = files["root"], files["caption"], files["vqa"], files["test"]
    assert root is not None and caption_csv is not None and vqa_csv is not None
    reader = _PlanReader(Path(source), root)
    if official is not None:
        reader.read_test(official)
    else:
        reader.report.notes.append("no official test CSV found (pass --test-csv): every row is in the train split")
    reader.read_captions(caption_csv, dict(modality_map or {}))
    reader.read_vqa(vqa_csv)
    reader.add_caveats()
    instruct_files = reader.instruct_files(instruct_json)
    # Order: official test images first (in test CSV order), then caption.csv, then VQA.csv.
    images = list(reader.entries.values())
    reader.report.images["referenced"] = len(images)
    return ReleasePlan(root=root, source=Path(source), images=images, has_test=official is not None,
                       instruct_files=instruct_files, report=reader.report)
