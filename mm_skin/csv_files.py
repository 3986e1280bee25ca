"""The CSV files this project writes (predictions, per-sample scores) and reads back.

On the way out every text cell goes through :func:`mm_skin.untrusted.csv_cell`: a model's answer
such as ``=HYPERLINK(...)`` is shown by a spreadsheet as text, never run as a formula. On the way
in :func:`dict_rows` undoes that and accepts fields up to CSV_FIELD_LIMIT characters (the csv
module's default, 131,072, made a long answer unreadable). The JSON lines log of a run keeps the
raw text and stays the source of truth.

>>> import io
>>> buffer = io.StringIO()
>>> write_rows(buffer, ["id", "prediction"], [["q1", "=1+1"], ["q2", "-1"]])
>>> buffer.getvalue().splitlines()
['id,prediction', "q1,'=1+1", 'q2,-1']
>>> [row["prediction"] for row in dict_rows(io.StringIO(buffer.getvalue()))]
['=1+1', '-1']
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TextIO

from mm_skin.untrusted import csv_cell, csv_value

# The largest value every platform's csv module accepts (a C long on Windows): no answer is cut.
CSV_FIELD_LIMIT = 2**31 - 1


def write_rows(f: TextIO, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Write ``header`` and ``rows`` to an open file (``newline=""``), every cell formula-safe."""
    writer = csv.writer(f)
    writer.writerow([csv_cell(c) for c in header])
    for row in rows:
        writer.writerow([csv_cell(c) for c in row])


def dict_rows(f: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The rows of a CSV as dicts (``csv.DictReader``), long fields allowed, :func:`csv_cell` undone.

    The reader is the csv module's, so ``fieldnames`` checks belong to the caller: use
    :func:`dict_reader` when the header is needed.
    """
    return (unescape_row(row) for row in dict_reader(f))


def dict_reader(f: Iterable[str]) -> csv.DictReader:
    """A ``csv.DictReader`` over ``f`` with the field limit raised to CSV_FIELD_LIMIT."""
    csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
    return csv.DictReader(f)


def unescape_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row of :func:`dict_reader` with the text :func:`write_rows` was given."""
    return {k: csv_value(v) if isinstance(v, str) else v for k, v in row.items()}


__all__ = ["CSV_FIELD_LIMIT", "dict_reader", "dict_rows", "unescape_row", "write_rows"]
