"""Answers made elsewhere: predictions files of any tool, lmms-eval sample logs, VLMEvalKit results.

:func:`read_answers` reads one file into :class:`Answer` records, whatever made it:

- ``skinvl`` (``.csv`` / ``.jsonl``): our predictions format (a ``skinvl eval`` run's
  ``predictions.jsonl``, or a file written by hand / an API script): a ``prediction`` column and a
  row id in ``id`` (or ``question_id``), or a 0-based row number in ``index``;
- in every format an ``answer_type`` (closed/open) column or doc field is kept for the per
  answer-type scores;
- ``lmms-eval`` (``*_samples_*.jsonl``, ``--log_samples``): one JSON object per document with
  ``doc_id`` (the row's position in the split), ``doc`` (the row without its image columns, so
  ``question_id``, ``question`` and ``answer`` of MM-Skin), ``target``, ``resps`` (raw answers, a
  list per request) and ``filtered_resps`` (the answers after the task's filters; what is scored);
- ``vlmevalkit`` (``.xlsx`` / ``.tsv``, ``{model}_{dataset}.xlsx``): the dataset sheet (``index``,
  ``question``, ``answer``, ...) with a ``prediction`` column added and ``image`` dropped. The row
  id is ``question_id`` when the sheet keeps it, else ``index`` (an integer ``index`` is a 0-based
  row number, as in a sheet made from our ``--export-prompts``). VLMEvalKit's failure marker
  ("Failed to obtain answer") is a failed question, never an answer.

:func:`match_rows` pairs the answers with the rows of a split (by id, else by position, else, for
rows with neither, by image id and question, and by the reference where one image has the same
question twice: the authors' ``VQA_test.py`` output has only ``image, question, answer,
prediction``; exact duplicates are matched in file order and counted), checks that they answer the
same questions, and measures coverage: answers for only part of the split are refused unless
``allow_partial`` (the coverage, how rows were matched and the duplicates go to results.json).
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from skinvl.evaluation.predictions import (
    PredictionsFileError,
    canonical_answer_type,
    canonical_modality,
    check_header,
    iter_rows,
    read_text,
    refuse_failed,
)
from skinvl.evaluation.runs import Row

ID_COLUMNS = ("id", "question_id", "row_id")
VLMEVALKIT_FAILED = "Failed to obtain answer"  # prefix of VLMEvalKit's FAIL_MSG variants
MISSING_LISTED = 20
# An .xlsx of a VLMEvalKit run over MM-Skin unpacks to a few MB; openpyxl holds many times the
# XML in memory, so a sheet unpacking past this is refused before it is opened.
MAX_XLSX_UNCOMPRESSED_BYTES = 100 * 1024 * 1024
MAX_XLSX_MEMBERS = 1000


@dataclass(frozen=True)
class Answer:
    """One answer of a predictions file, before it is matched to a split's rows."""

    prediction: str
    where: str  # file and row/line, for messages
    id: str | None = None  # a row id (question_id)
    position: int | None = None  # 0-based row number (lmms-eval doc_id, an integer VLMEvalKit index)
    question: str | None = None
    answer: str | None = None  # the reference, when the file carries one
    modality: str | None = None
    image_id: str | None = None
    answer_type: str | None = None  # closed / open, when the file carries it


@dataclass
class AnswerFile:
    """The answers of one file and the format they were read as."""

    path: Path
    format: str  # "skinvl", "lmms-eval" or "vlmevalkit"
    answers: list[Answer]


def _text(value: Any) -> str | None:
    """A cell as text: None for missing / NaN / blank."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    text = str(value)
    return text if text.strip() else None


def _position(value: Any) -> int | None:
    text = _text(value)
    if text is None:
        return None
    try:
        number = float(text)
    except ValueError:
        return None
    return int(number) if number.is_integer() and number >= 0 else None


def detect_format(path: Path) -> str:
    """``vlmevalkit`` for .xlsx/.tsv, ``lmms-eval`` for JSONL with ``doc_id`` + responses, else ``skinvl``."""
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".tsv"):
        return "vlmevalkit"
    if suffix in (".jsonl", ".json", ".ndjson") and path.is_file():
        with path.open(encoding="utf-8", errors="replace") as f:  # only a guess: iter_rows names bad bytes
            first = next((line for line in f if line.strip()), "")
        try:
            head = json.loads(first)
        except json.JSONDecodeError:
            return "skinvl"  # iter_rows names the bad line
        if isinstance(head, dict) and "doc_id" in head and ("filtered_resps" in head or "resps" in head):
            return "lmms-eval"
    return "skinvl"


def _skinvl_answer(row: dict[str, Any], where: str) -> Answer:
    refuse_failed(row, where)
    prediction = row.get("prediction")
    if not isinstance(prediction, str):
        raise PredictionsFileError(f"{where}: 'prediction' must be a string, got {prediction!r}; write an empty "
                                   "string for a blank answer.")
    row_id = next((_text(row.get(c)) for c in ID_COLUMNS if _text(row.get(c)) is not None), None)
    if _text(row.get("image_id")) is None and _text(row.get("image")) is not None:  # the authors' VQA_test.py output
        row = {**row, "image_id": row["image"]}
    return _answer(prediction, where, row, row_id, _position(row.get("index")))


def _answer(prediction: str, where: str, fields: dict[str, Any], row_id: str | None, position: int | None) -> Answer:
    """An Answer whose question, reference, modality, image id and answer type are ``fields``' (checked)."""
    return Answer(prediction, where, id=row_id, position=position, question=_text(fields.get("question")),
                  answer=_text(fields.get("answer")), modality=canonical_modality(_text(fields.get("modality")), where),
                  image_id=_text(fields.get("image_id")),
                  answer_type=canonical_answer_type(_text(fields.get("answer_type")), where))


def _unwrap(value: Any) -> Any:
    """The first element of (nested) lists: lmms-eval keeps one response list per request."""
    while isinstance(value, list) and value:
        value = value[0]
    return value


def _lmms_eval_answer(row: dict[str, Any], where: str) -> Answer:
    response = _unwrap(row["filtered_resps"] if "filtered_resps" in row else row.get("resps"))
    if not isinstance(response, str):
        raise PredictionsFileError(f"{where}: filtered_resps/resps hold no text answer ({response!r}); this is "
                                   "not a generate_until task's sample log.")
    doc = row.get("doc") if isinstance(row.get("doc"), dict) else {}
    position = row.get("doc_id")
    if not isinstance(position, int) or position < 0:
        raise PredictionsFileError(f"{where}: doc_id {position!r} is not a row number (a non-negative integer).")
    modality = doc.get("modality")  # a ClassLabel stays an integer in lmms-eval's doc: --data names it
    fields = {**doc, "answer": _text(row.get("target")) or doc.get("answer"),
              "modality": modality if isinstance(modality, str) else None}
    return _answer(response, where, fields, _text(doc.get("question_id")), position)


def check_spreadsheet_size(path: Path) -> None:
    """Refuse an .xlsx whose members unpack to more than MAX_XLSX_UNCOMPRESSED_BYTES, before openpyxl
    reads it: a 6 MB zip bomb would otherwise unpack into gigabytes. Python's zipfile never
    inflates a member past its declared size, so the declared sizes are a true bound."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError) as err:
        raise PredictionsFileError(f"{path}: not a readable .xlsx (a zip archive): {err}; export the sheet again.") from None
    total = sum(m.file_size for m in members)
    if total > MAX_XLSX_UNCOMPRESSED_BYTES or len(members) > MAX_XLSX_MEMBERS:
        biggest = max(members, key=lambda m: m.file_size)
        raise PredictionsFileError(
            f"{path}: unpacks to {total} bytes in {len(members)} members (largest {biggest.filename!r}, "
            f"{biggest.file_size} bytes); the cap is {MAX_XLSX_UNCOMPRESSED_BYTES} bytes and {MAX_XLSX_MEMBERS} "
            "members. A VLMEvalKit sheet is far smaller: export it again, or as .tsv.")


def _vlmevalkit_frame(path: Path):
    import pandas as pd

    if path.suffix.lower() == ".xlsx":
        check_spreadsheet_size(path)
        try:
            return pd.read_excel(path, dtype=object)  # needs openpyxl (the `eval` extra)
        except ImportError as err:
            raise PredictionsFileError(f"{path}: reading .xlsx needs openpyxl ({err}). Fix: pip install openpyxl") from err
    text = read_text(path, PredictionsFileError)
    check_header(next(csv.reader(io.StringIO(text), delimiter="\t"), []), path)  # pandas would rename a twin "x.1"
    return pd.read_csv(io.StringIO(text), sep="\t", dtype=str, keep_default_na=False)


def _vlmevalkit_answers(path: Path) -> list[Answer]:
    frame = _vlmevalkit_frame(path)
    missing = [c for c in ("index", "prediction") if c not in frame.columns]
    if missing:
        raise PredictionsFileError(f"{path}: missing column(s) {missing}; found {list(frame.columns)}. A VLMEvalKit "
                                   "prediction file has 'index' and 'prediction' (+ question, answer, ...).")
    answers = []
    for i, row in enumerate(frame.to_dict("records"), start=1):
        where = f"{path}, row {i}"
        prediction = _text(row.get("prediction")) or ""
        if prediction.startswith(VLMEVALKIT_FAILED):
            raise PredictionsFileError(f"{where}: VLMEvalKit could not get an answer ({prediction[:80]!r}); rerun "
                                       "VLMEvalKit for it (without --ignore-failed) or remove the row.")
        index = _text(row.get("index"))
        position = _position(index)
        row_id = _text(row.get("question_id")) or (index if position is None else None)
        answers.append(_answer(prediction, where, row, row_id, position))
    return answers


def read_answers(path: str | Path) -> AnswerFile:
    """Read a predictions file of any supported format (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise PredictionsFileError(f"{path}: no such file.")
    fmt = detect_format(path)
    if fmt == "vlmevalkit":
        answers = _vlmevalkit_answers(path)
    else:
        read = _lmms_eval_answer if fmt == "lmms-eval" else _skinvl_answer
        answers = [read(row, where) for row, where in iter_rows(path)]
    if not answers:
        raise PredictionsFileError(f"{path}: the file has no answers.")
    return AnswerFile(path, fmt, answers)


def image_key(value: Any) -> str | None:
    """An image reference as the dataset's image id: the file name without folders and extension."""
    text = _text(value)
    return PurePosixPath(text.replace("\\", "/")).stem if text is not None else None


def _squash(text: Any) -> str:
    return " ".join(str(text).split())


class _Matcher:
    """Finds each answer's row: by id, else by row number, else by image id + question (+ reference)."""

    def __init__(self, rows: Sequence[Row]):
        self.rows, self.by_id = rows, {row.id: row for row in rows}
        self.by_content: dict[tuple[str | None, str], list[Row]] = {}
        for row in rows:
            self.by_content.setdefault((image_key(row.fields.get("image_id")), _squash(row.question)), []).append(row)
        self.how: Counter[str] = Counter()
        self.duplicates = 0

    def row_of(self, answer: Answer, taken: dict[str, Answer]) -> Row:
        if answer.id is not None and answer.id in self.by_id:
            self.how["id"] += 1
            return self.by_id[answer.id]
        if answer.position is not None and answer.position < len(self.rows) and answer.id is None:
            self.how["row number"] += 1
            return self.rows[answer.position]
        if answer.id is None and answer.position is None and answer.question is not None:
            row = self._by_content(answer, taken)
            if row is not None:
                self.how["image id and question"] += 1
                return row
        raise PredictionsFileError(f"{answer.where}: {self._what(answer)} is not in the split ({len(self.rows)} rows, ids "
                                   f"like {self.rows[0].id!r}). The file belongs to another split or dataset version: "
                                   "pass the --data/--config/--split it was made on.")

    def _by_content(self, answer: Answer, taken: dict[str, Answer]) -> Row | None:
        candidates = self.by_content.get((image_key(answer.image_id), _squash(answer.question)), [])
        if len(candidates) > 1 and answer.answer is not None:  # the reference tells same-question rows apart
            candidates = [r for r in candidates if _squash(r.fields.get("answer")) == _squash(answer.answer)]
        free = [r for r in candidates if r.id not in taken]
        if len(candidates) > 1 and free:
            self.duplicates += 1  # exact duplicates of one another: matched in file order
        return (free or candidates or [None])[0]

    @staticmethod
    def _what(answer: Answer) -> str:
        if answer.id is not None:
            return f"row id {answer.id!r}"
        if answer.position is not None:
            return f"row number {answer.position}"
        if answer.question is None:
            return "a row without an id, row number or question"
        return f"image {answer.image_id!r} with question {answer.question[:60]!r}"


def _check_same(answer: Answer, row: Row) -> None:
    """The answer must be to this row's question (and reference): else ids or order are off."""
    pairs = [("question", answer.question, row.question), ("answer", answer.answer, row.fields.get("answer")),
             ("answer_type", answer.answer_type, row.fields.get("answer_type"))]
    for what, theirs, ours in pairs:
        if theirs is not None and ours is not None and _squash(theirs) != _squash(ours):
            raise PredictionsFileError(
                f"{answer.where}: the {what} {theirs[:60]!r} differs from row {row.id}'s {str(ours)[:60]!r}; the "
                "file's rows do not line up with the split: check --data/--config/--split or the file's ids.")


def coverage_of(rows: Sequence[Row], answered: Iterable[str]) -> dict[str, Any]:
    """How many of ``rows`` have an answer (ids in ``answered``), for results.json."""
    done = set(answered)
    missing = [row.id for row in rows if row.id not in done]
    n = len(rows)
    return {"checked": True, "rows_in_split": n, "answered": n - len(missing), "fraction": (n - len(missing)) / n if n else 0.0,
            "complete": not missing, "missing_count": len(missing), "missing_ids": missing[:MISSING_LISTED]}


def match_rows(answers: Sequence[Answer], rows: Sequence[Row], *, allow_partial: bool = False,
               source: str = "") -> tuple[list[tuple[Row, Answer]], dict[str, Any]]:
    """Pair answers with rows (row order) and measure coverage; partial coverage needs ``allow_partial``."""
    if not rows:
        raise PredictionsFileError("the split has no rows.")
    matcher = _Matcher(rows)
    matched: dict[str, Answer] = {}
    for answer in answers:
        row = matcher.row_of(answer, matched)
        if row.id in matched:
            raise PredictionsFileError(f"{answer.where}: row {row.id} is answered twice (first at "
                                       f"{matched[row.id].where}); keep one answer per row.")
        _check_same(answer, row)
        matched[row.id] = answer
    coverage = {**coverage_of(rows, matched), "matched_by": dict(matcher.how),
                "duplicates_in_file_order": matcher.duplicates}
    if not coverage["complete"] and not allow_partial:
        raise PredictionsFileError(
            f"{source}: answers cover {len(matched)} of the split's {len(rows)} rows (first missing: "
            f"{coverage['missing_ids'][0]}); "
            "a subset is not comparable with full runs. Answer every row, or pass --allow-partial to score the "
            "subset (its coverage is recorded in results.json).")
    return [(row, matched[row.id]) for row in rows if row.id in matched], coverage


__all__ = ["Answer", "AnswerFile", "VLMEVALKIT_FAILED", "coverage_of", "detect_format", "match_rows", "read_answers"]
