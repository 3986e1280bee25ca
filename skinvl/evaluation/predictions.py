"""Read and write VQA predictions files (CSV or JSONL), the input of ``skinvl eval score``.

A predictions file holds one row per question with the columns

- ``question``: the question asked;
- ``answer``: the reference answer (must not be blank);
- ``prediction``: the model's answer (may be blank: blank answers are scored, and counted);
- ``modality`` (optional): clinical / dermoscopic / pathology, for the per-modality tables;
- ``image_id`` (optional): any identifier of the image, carried through to the reports.

Other columns are allowed and ignored. ``skinvl eval vqa`` writes exactly this format, so a
file from any other model (GPT-4o, another VLM) is scored the same way.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

REQUIRED_COLUMNS = ("question", "answer", "prediction")
OPTIONAL_COLUMNS = ("modality", "image_id")


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


def _sample_from_row(row: dict, where: str) -> VQASample:
    """Validate one row (a dict from CSV or JSONL) and turn it into a VQASample.

    ``where`` names the file and row (CSV data row) or line (JSONL) for error messages.
    """
    if row.get("status") == "failed":  # a question of a `skinvl eval` run that got no answer
        raise PredictionsFileError(
            f"{where}: this question failed ({row.get('error')}) and has no prediction. Rerun the "
            "evaluation with --resume to ask it again, or remove the row to score the rest."
        )
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
    return VQASample(**values)  # type: ignore[arg-type]


def _check_columns(columns: list[str], path: Path) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise PredictionsFileError(
            f"{path}: missing column(s) {missing}; found {columns}. A predictions file needs "
            f"the columns {list(REQUIRED_COLUMNS)} (+ optional {list(OPTIONAL_COLUMNS)})."
        )


def read_predictions(path: str | Path) -> list[VQASample]:
    """Read a predictions file (``.csv`` or ``.jsonl``/``.json`` lines) into samples.

    Raises PredictionsFileError naming the file, the row and the fix for a missing column, a
    null or non-string value, a blank reference, or a malformed JSON line.

    >>> samples = read_predictions("predictions.csv")  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise PredictionsFileError(f"{path}: no such file.")
    suffix = path.suffix.lower()
    samples: list[VQASample] = []
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            _check_columns(list(reader.fieldnames or []), path)
            # Row numbers are 1-based data rows; the header is line 1 of the file.
            for i, row in enumerate(reader, start=1):
                samples.append(_sample_from_row(row, f"{path}, row {i}"))
    elif suffix in (".jsonl", ".json", ".ndjson"):
        with path.open(encoding="utf-8") as f:
            for i, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise PredictionsFileError(
                        f"{path}, line {i}: not valid JSON ({e.msg}). A .jsonl file needs one "
                        "JSON object per line."
                    ) from e
                if not isinstance(row, dict):
                    raise PredictionsFileError(
                        f"{path}, line {i}: expected a JSON object, got {type(row).__name__}."
                    )
                if not samples:
                    _check_columns(list(row), path)
                samples.append(_sample_from_row(row, f"{path}, line {i}"))
    else:
        raise PredictionsFileError(
            f"{path}: unknown extension {suffix!r}; use .csv or .jsonl."
        )
    if not samples:
        raise PredictionsFileError(f"{path}: the file has no rows to score.")
    return samples


def write_predictions(samples: list[VQASample], path: str | Path) -> Path:
    """Write samples as a predictions CSV (the format :func:`read_predictions` reads)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["image_id", "modality", "question", "answer", "prediction"])
        for s in samples:
            writer.writerow([s.image_id or "", s.modality or "", s.question, s.answer, s.prediction])
    return path
