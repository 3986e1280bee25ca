"""The one CSV column matcher of both CLIs: header names matched by alias, repeated names refused.

The builder (:func:`mm_skin.release.read_csv`) and evaluation (label CSVs and predictions CSVs
in :mod:`skinvl.evaluation`) read headers written by hand in several spellings, so a column is
found by alias after :func:`norm_col`. A header naming one column twice is refused on both
sides: which of the two holds the data is a guess (csv.DictReader keeps the last, an index
lookup the first), and guessing differently per tool is how results silently diverge.

>>> match_columns(["Image_Path", "Question"], {"image": ("image", "imagepath"), "q": ("question",)})
{'image': 0, 'q': 1}
>>> duplicate_columns_problem(["image", "Image ", "answer"])
"duplicate header column(s) 'Image ', 'image'; rename or delete all but one of each (case, spaces, '_' and '-' are ignored when matching)"
"""

from __future__ import annotations

import collections
import re
from collections.abc import Mapping, Sequence

#: how header names are compared, for messages
MATCH_RULE = "case, spaces, '_' and '-' are ignored"


def norm_col(name: str) -> str:
    """A header name as matched: without case, spaces, underscores, hyphens and a BOM."""
    return re.sub(r"[\s_\-]+", "", name.replace("\ufeff", "")).lower()


def duplicate_columns_problem(header: Sequence[str]) -> str | None:
    """What is wrong when ``header`` names a column twice (after :func:`norm_col`), else None.

    Blank names are not compared (spreadsheets leave several unnamed columns).
    """
    normalized = [norm_col(h) for h in header]
    counts = collections.Counter(n for n in normalized if n)  # linear: a hostile header may be very wide
    repeated = sorted({h for h, n in zip(header, normalized, strict=True) if counts[n] > 1})
    if not repeated:
        return None
    return (f"duplicate header column(s) {', '.join(repr(h) for h in repeated)}; "
            f"rename or delete all but one of each ({MATCH_RULE} when matching)")


def match_columns(header: Sequence[str], aliases: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Canonical column -> index in ``header`` of its first alias (in alias order) that is present.

    Columns with no alias in the header are left out; the caller decides which are required.
    """
    normalized = [norm_col(h) for h in header]
    found: dict[str, int] = {}
    for canonical, spellings in aliases.items():
        index = next((normalized.index(a) for a in spellings if a in normalized), None)
        if index is not None:
            found[canonical] = index
    return found


__all__ = ["MATCH_RULE", "duplicate_columns_problem", "match_columns", "norm_col"]
