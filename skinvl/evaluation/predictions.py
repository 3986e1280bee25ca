"""Read and write VQA predictions files (CSV or JSONL), the input of ``skinvl eval score``.

A predictions file holds one row per question with the columns

- ``question``: the question asked;
- ``answer``: the reference answer (must not be blank);
- ``prediction``: the model's answer (may be blank: blank answers are scored, and counted);
- ``modality`` (optional): clinical / dermoscopic / pathology, for the per-modality tables; the
  builder's spellings are accepted (``Skin``, ``dermoscopy``, ``H&E``... via
  :data:`mm_skin.schema.MODALITY_ALIASES`) and stored canonical, so ``Skin`` and ``clinical`` are one
  group; any other value is an error naming the row (a typo would otherwise become its own group);
- ``answer_type`` (optional): ``closed`` (a yes/no question answered yes or no) or ``open``, the
  dataset's column (:func:`mm_skin.qa_columns.answer_type`), for the per answer-type table of the
  ``standard`` protocol; any other value is an error naming the row;
- ``image_id`` (optional): any identifier of the image, carried through to the reports;
- ``id`` (optional): the row id (the dataset's ``question_id``; ``skinvl eval vqa`` writes it), used
  by ``--data`` to check coverage and by ``skinvl eval compare`` to pair rows.

Other columns are allowed and ignored; a header naming a column twice is refused (the builder's
rule, :mod:`mm_skin.columns`). Files are UTF-8 (a BOM is allowed); anything else is an error
naming the line. ``skinvl eval vqa`` writes exactly this format, so a
file from any other model (GPT-4o, another VLM) is scored the same way.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mm_skin.columns import duplicate_columns_problem
from mm_skin.csv_files import dict_reader, unescape_row, write_rows
from mm_skin.qa_columns import CLOSED, OPEN
from mm_skin.schema import MODALITIES, MODALITY_ALIASES, normalize_modality

REQUIRED_COLUMNS = ("question", "answer", "prediction")
OPTIONAL_COLUMNS = ("modality", "image_id", "id", "answer_type")
ANSWER_TYPES = (CLOSED, OPEN)


class PredictionsFileError(ValueError):
    """A predictions file that cannot be scored; the message names the file, row and fix."""


@dataclass(frozen=True)
class VQASample:
    """One scored question: the reference ``answer`` and the model's ``prediction``."""

    question: str
    answer: str
    prediction: str
    modality: str | None = None
    image_id: str | None = None
    id: str | None = None  # the row id (question_id) when known
    answer_type: str | None = None  # "closed" / "open" when known


def read_text(path: Path, error: type[ValueError]) -> str:
    """The text of a UTF-8 file (a BOM is dropped); ``error`` naming the file and line otherwise."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise error(f"{path}: cannot read the file ({err.strerror or err}); check its permissions.") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise error(f"{path}, line {line}: not UTF-8 text (byte {data[err.start]:#04x} at offset {err.start}); "
                    "re-save the file as UTF-8 (spreadsheets: 'CSV UTF-8').") from None


def canonical_modality(value: Any, where: str) -> str | None:
    """A modality cell as one of MODALITIES (aliases such as ``Skin`` mapped); None when blank."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    canonical = MODALITY_ALIASES.get(normalize_modality(str(value)))
    if canonical is None:
        raise PredictionsFileError(
            f"{where}: modality {value!r} is not recognised; write one of {', '.join(MODALITIES)} (or a known "
            "alias such as 'skin', 'dermoscopy', 'histology'), or leave the cell blank.")
    return canonical


def canonical_answer_type(value: Any, where: str) -> str | None:
    """An answer-type cell as ``closed`` or ``open`` (case and spaces ignored); None when blank."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    text = str(value).strip().lower()
    if text not in ANSWER_TYPES:
        raise PredictionsFileError(
            f"{where}: answer_type {value!r} is not recognised; write {CLOSED!r} (a yes/no question answered yes "
            f"or no) or {OPEN!r}, or leave the cell blank.")
    return text


def refuse_failed(row: dict, where: str) -> None:
    """Refuse a question a ``skinvl eval`` run could not answer: it is never scored as a blank answer."""
    if row.get("status") == "failed":
        raise PredictionsFileError(
            f"{where}: this question failed ({row.get('error')}) and has no prediction. Rerun the "
            "evaluation with --resume to ask it again, or remove the row to score the rest."
        )


def _sample_from_row(row: dict, where: str) -> VQASample:
    """Validate one row (a dict from CSV or JSONL) and turn it into a VQASample.

    ``where`` names the file and row (CSV data row) or line (JSONL) for error messages.
    """
    refuse_failed(row, where)
    values: dict[str, str | None] = {}
    for column in REQUIRED_COLUMNS:
        value = row.get(column)
        if value is None:
            raise PredictionsFileError(
                f"{where}: column {column!r} is missing or null. Every row needs a string "
                f"{column!r}; write an empty string for a blank model answer."
            )
        if not isinstance(value, str):
            raise PredictionsFileError(
                f"{where}: column {column!r} must be a string, got {type(value).__name__} "
                f"{value!r}."
            )
        values[column] = value
    if not values["answer"].strip():
        raise PredictionsFileError(
            f"{where}: the reference 'answer' is blank (question {values['question']!r}). "
            "A blank reference cannot be scored (ROUGE and token recall are undefined); fix or "
            "remove the row."
        )
    for column in OPTIONAL_COLUMNS:
        value = row.get(column)
        if value is None or value == "":
            values[column] = None
        else:
            values[column] = str(value)
    values["modality"] = canonical_modality(values["modality"], where)
    values["answer_type"] = canonical_answer_type(values["answer_type"], where)
    return VQASample(**values)  # type: ignore[arg-type]


def _check_columns(columns: list[str], path: Path) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise PredictionsFileError(
            f"{path}: missing column(s) {missing}; found {columns}. A predictions file needs "
            f"the columns {list(REQUIRED_COLUMNS)} (+ optional {list(OPTIONAL_COLUMNS)})."
        )


def check_header(header: list[str], path: Path) -> None:
    """Refuse a header that names a column twice (which of the two is meant is a guess)."""
    problem = duplicate_columns_problem(header)
    if problem:
        raise PredictionsFileError(f"{path}, header: {problem}.")


def iter_rows(path: str | Path) -> Iterator[tuple[dict[str, Any], str]]:
    """``(row, where)`` for each row of a ``.csv`` or ``.jsonl`` file; ``where`` names file and row/line.

    Raises PredictionsFileError for a missing file, an unknown extension or a malformed JSON line.
    """
    path = Path(path)
    if not path.is_file():
        raise PredictionsFileError(f"{path}: no such file.")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        reader = dict_reader(io.StringIO(read_text(path, PredictionsFileError), newline=""))
        check_header(reader.fieldnames or [], path)
        # Row numbers are 1-based data rows; the header is line 1 of the file.
        for i, row in enumerate(reader, start=1):
            yield unescape_row(row), f"{path}, row {i}"
        return
    if suffix not in (".jsonl", ".json", ".ndjson"):
        raise PredictionsFileError(f"{path}: unknown extension {suffix!r}; use .csv or .jsonl.")
    for i, line in enumerate(read_text(path, PredictionsFileError).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise PredictionsFileError(
                f"{path}, line {i}: not valid JSON ({e.msg}). A .jsonl file needs one JSON object per line."
            ) from e
        if not isinstance(row, dict):
            raise PredictionsFileError(f"{path}, line {i}: expected a JSON object, got {type(row).__name__}.")
        yield row, f"{path}, line {i}"


def read_predictions(path: str | Path) -> list[VQASample]:
    """Read a predictions file (``.csv`` or ``.jsonl``/``.json`` lines) into samples.

    Raises PredictionsFileError naming the file, the row and the fix for a missing column, a
    null or non-string value, a blank reference, or a malformed JSON line.

    >>> samples = read_predictions("predictions.csv")  # doctest: +SKIP
    """
    path = Path(path)
    samples: list[VQASample] = []
    for row, where in iter_rows(path):
        if not samples:
            _check_columns(list(row), path)
        samples.append(_sample_from_row(row, where))
    if not samples:
        raise PredictionsFileError(f"{path}: the file has no rows to score.")
    return samples


def sample_columns(samples: Sequence[VQASample]) -> list[str]:
    """The columns a predictions CSV of ``samples`` has: ``answer_type`` only when some sample knows it."""
    typed = any(s.answer_type for s in samples)
    return ["id", "image_id", "modality", *(["answer_type"] if typed else []), "question", "answer", "prediction"]


def sample_cells(sample: VQASample, columns: Sequence[str]) -> list[str]:
    """One sample's cells for ``columns`` (from :func:`sample_columns`); blank for unknown values."""
    return [getattr(sample, column) or "" for column in columns]


def write_predictions(samples: list[VQASample], path: str | Path) -> Path:
    """Write samples as a predictions CSV (the format :func:`read_predictions` reads)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = sample_columns(samples)
    with path.open("w", newline="", encoding="utf-8") as f:
        write_rows(f, columns, (sample_cells(s, columns) for s in samples))
    return path
