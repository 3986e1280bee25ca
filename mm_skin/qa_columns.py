"""Per-QA-pair columns the builder writes: ``question_id`` and ``answer_type``.

Both are pure functions of the release's own files, so a rebuild of the same release gives the
same values, and predictions files and evaluation can key on them (as SLAKE and VQA-RAD do).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import PurePath

CLOSED = "closed"
OPEN = "open"

# A yes/no question starts with an auxiliary or modal verb ("Is ...?", "Does ...?", "Can ...?").
_YES_NO_QUESTION = re.compile(
    r"^\W*(?:is|are|was|were|am|do|does|did|has|have|had|can|could|will|would|shall|should|"
    r"may|might|must|isn't|aren't|doesn't|don't|didn't|wasn't|weren't|hasn't|haven't|can't|"
    r"couldn't|won't|wouldn't|shouldn't)\b", re.IGNORECASE)
_YES_NO_ANSWER = re.compile(r"^\W*(?:yes|no)\b", re.IGNORECASE)


def answer_type(question: str, answer: str) -> str:
    """``"closed"`` for a yes/no question answered yes or no, else ``"open"``.

    Rules (SLAKE / VQA-RAD's split into closed and open answers):

    1. the question starts with an auxiliary or modal verb (is, are, does, can, should, ...,
       negated forms too), after any leading punctuation or spaces, case ignored;
    2. the answer's first word is "yes" or "no" ("Yes.", "No, it is benign." count).

    Both must hold: "Is it a nevus or a melanoma?" answered "A nevus." is open, and so is
    "What is it?" answered "No lesion is visible.".

    >>> answer_type("Is the lesion benign?", "Yes, a compound naevus.")
    'closed'
    >>> answer_type("Is it a naevus or a melanoma?", "A melanoma.")
    'open'
    """
    if _YES_NO_QUESTION.match(question or "") and _YES_NO_ANSWER.match(answer or ""):
        return CLOSED
    return OPEN


def question_id(source_file_name: str, row_number: int, image: str, question: str) -> str:
    """A QA pair's id, stable across rebuilds of the same release.

    ``source_file_name`` is the annotation file the pair was read from (its name only: where the
    release lies on disk does not matter), ``row_number`` the pair's row in that file as the
    builder numbers rows in its messages. The id reads ``<file stem>-<row>-<8 hex digits>``; the
    digits hash the image path and the question, so an edited row in a new release gets a new id
    instead of silently taking the old one.

    >>> question_id("Dataframe/test/vqa/MM-Skin_test.csv", 12, "dataset/bk5_630.png", "Where?")
    'MM-Skin_test-12-1662bf96'
    """
    stem = PurePath(source_file_name.replace("\\", "/")).stem
    digest = hashlib.sha256(f"{image}\x1f{question}".encode()).hexdigest()[:8]
    return f"{stem}-{row_number}-{digest}"
