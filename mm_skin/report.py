"""The build report: what a build read, wrote and left out (``build_report.json``), and its errors.

>>> report = BuildReport()
>>> report.warn("caption.csv", 4, "image", "dataset/fig_2.png", "unknown textbook: no bk prefix")
>>> report.as_dict()["warnings"][0]["row"]
4
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import re
from pathlib import Path
from typing import Any

from mm_skin import __version__

#: the report's file in a built folder
REPORT_FILE = "build_report.json"
#: the report's key that marks a folder as a build of ours (mm_skin.build.is_our_build)
VERSION_KEY = "mm_skin_dataset_version"


class ReleaseError(Exception):
    """The release cannot be built as given (missing file/column, unmapped modality...)."""


class StrictError(ReleaseError):
    """``--strict`` was given and some rows would not be written."""


def unreadable_file(name: str, error: OSError) -> ReleaseError:
    """The one-line error for an input file that cannot be read (permissions, I/O error)."""
    return ReleaseError(f"{name}: cannot read the file ({error.strerror or error}); make it readable (chmod +r)")


@dataclasses.dataclass
class Issue:
    """One input row that was not written (``skipped``) or was written with a caveat."""

    file: str
    row: int | None
    column: str | None
    value: str | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        """The issue as a JSON-ready dict."""
        return dataclasses.asdict(self)


@dataclasses.dataclass
class FileCounts:
    """One input file: its role, checksum and what became of its rows."""

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
        self.synthetic: str | None = None  # what a synthetic stand-in release is (None: the real one)
        self.test_file: str | None = None  # the test CSV's name in ``files``

    def add_file(self, name: str, role: str, path: Path) -> None:
        """Record an input file (checksum and size) under its release-relative ``name``."""
        try:
            self.files[name] = FileCounts(role=role, sha256=sha256_file(path), size=path.stat().st_size)
        except OSError as e:
            raise unreadable_file(name, e) from None

    def skip(self, file: str, row: int | None, column: str | None, value: Any, reason: str) -> None:
        """Record a row that is NOT written."""
        self.skipped.append(Issue(file, row, column, None if value is None else str(value), reason))
        if file in self.files:
            self.files[file].rows_skipped += 1

    def warn(self, file: str, row: int | None, column: str | None, value: Any, reason: str) -> None:
        """Record a row that is written with a caveat."""
        self.warnings.append(Issue(file, row, column, None if value is None else str(value), reason))

    def count_written(self, config: str, split: str, n: int) -> None:
        """Add ``n`` rows written to ``config``/``split``."""
        per = self.written.setdefault(config, {})
        per[split] = per.get(split, 0) + n

    def _skipped_rows(self) -> set[tuple[str, int | None]]:
        return {(i.file, i.row) for i in self.skipped}

    def written_warnings(self) -> list[Issue]:
        """The warnings on rows that were written (a row can be warned about, then left out)."""
        skipped = self._skipped_rows()
        return [w for w in self.warnings if (w.file, w.row) not in skipped]

    def as_dict(self) -> dict[str, Any]:
        """The report as written to ``build_report.json`` (each warning says whether its row was written)."""
        skipped = self._skipped_rows()
        return {
            VERSION_KEY: __version__,
            "synthetic": self.synthetic,
            "test_file": self.test_file,
            "notes": self.notes,
            "files": {k: dataclasses.asdict(v) for k, v in self.files.items()},
            "written": self.written,
            "images": self.images,
            "modality_values": self.modality_values,
            "skipped_by_reason": dict(sorted(_reason_counts(self.skipped).items())),
            "skipped": [i.as_dict() for i in self.skipped],
            "warnings": [{**i.as_dict(), "row_written": (i.file, i.row) not in skipped} for i in self.warnings],
        }

    def write(self, folder: Path) -> None:
        """Write :meth:`as_dict` to ``folder / REPORT_FILE``."""
        text = json.dumps(self.as_dict(), indent=2, ensure_ascii=False) + "\n"
        (folder / REPORT_FILE).write_text(text, encoding="utf-8")

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
            lines.append(f"  {len(self.skipped)} rows NOT written: {_by_kind(self.skipped)}")
            for issue in self.skipped[:5]:
                lines.append(f"    {issue.file} row {issue.row}: {issue.reason} ({issue.column}={short_repr(issue.value)})")
            if len(self.skipped) > 5:
                lines.append(f"    ... {len(self.skipped) - 5} more in build_report.json")
        written = self.written_warnings()
        if written:
            lines.append(f"  {len(written)} warnings (rows written): {_by_kind(written)}")
        if len(self.warnings) > len(written):
            lines.append(f"  {len(self.warnings) - len(written)} warnings on rows NOT written (in build_report.json)")
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)


def _reason_counts(issues: list[Issue]) -> collections.Counter[str]:
    # "duplicate of row 12" and "duplicate of row 40" are one kind of problem; a reason's details
    # after its first ":" are dropped, but not a ":" inside parentheses ("(kept: exact)").
    return collections.Counter(re.sub(r"\d+", "N", re.split(r":(?![^(]*\))", i.reason)[0]) for i in issues)


def _by_kind(issues: list[Issue]) -> str:
    return "; ".join(f"{r} x{n}" for r, n in _reason_counts(issues).most_common())


def short_repr(value: Any, n: int = 60) -> str:
    """``repr(value)`` cut to ``n`` characters, for one-line messages."""
    try:
        s = repr(value)
    except RecursionError:  # a deeply nested JSON value
        s = f"<{type(value).__name__} nested too deeply to show>"
    return s if len(s) <= n else s[: n - 3] + "..."


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
