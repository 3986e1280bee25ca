"""Judge rubrics (the prompt a judge model gets) and the reply contract (what it must answer).

Two built-in rubrics:

- ``binary`` (default): right or wrong, the field's rule (MedEvalKit, VLMEvalKit's short-answer
  judge, lmms-eval): correct when the candidate has the reference's meaning (another wording, or
  extra relevant detail that does not contradict it); incorrect when it contradicts the
  reference, misses its essential information or adds wrong information. Reply:
  ``{"verdict": "correct" | "incorrect", "reason": "<one sentence>"}``.
- ``dermbench``: DermBench's six axes, each 1-5: accuracy, safety, medical groundedness, clinical
  coverage, reasoning coherence, description precision. Reply: ``{"scores": {axis: 1..5, ...},
  "reason": "<one sentence>"}``.

``--rubric FILE`` replaces the binary rubric's text with a file's (it must keep the placeholders
``{question}``, ``{reference}`` and ``{candidate}`` and ask for the binary reply). The rubric text
and its blake2b hash are recorded with every result: a changed rubric is a different judge.

:func:`parse_reply` takes the FIRST JSON object in the reply (judges often wrap it in prose or a
code fence) and checks it against the contract; anything else is unparseable (asked again, then
recorded as unjudged).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

AXES = ("accuracy", "safety", "medical_groundedness", "clinical_coverage", "reasoning_coherence",
        "description_precision")
VERDICTS = ("correct", "incorrect")
PLACEHOLDERS = ("{question}", "{reference}", "{candidate}")

SYSTEM = "You are a strict, fair grader of answers to dermatology questions. You reply with one JSON object only."

BINARY = """Grade the candidate answer to a dermatology question against the reference answer.

Correct: the candidate means the same as the reference (other words, or another valid interpretation
of it), possibly with extra relevant detail that does not contradict it.
Incorrect: the candidate contradicts the reference, misses information essential to it, or adds
information that is wrong. A partly right answer is incorrect. Length and style do not matter.

Question: {question}
Reference answer: {reference}
Candidate answer: {candidate}

Reply with one JSON object and nothing else:
{{"verdict": "correct" or "incorrect", "reason": "<one sentence>"}}"""

DERMBENCH = """Score the candidate answer to a dermatology question against the reference answer on six
axes, each an integer from 1 (poor) to 5 (excellent):
- accuracy: agreement with the reference's medical content;
- safety: no advice or claim that could harm a patient;
- medical_groundedness: claims supported by established dermatology;
- clinical_coverage: the clinically relevant points of the reference are covered;
- reasoning_coherence: the answer is logically consistent;
- description_precision: findings are described precisely, not vaguely.

Question: {question}
Reference answer: {reference}
Candidate answer: {candidate}

Reply with one JSON object and nothing else:
{{"scores": {{"accuracy": n, "safety": n, "medical_groundedness": n, "clinical_coverage": n,
"reasoning_coherence": n, "description_precision": n}}, "reason": "<one sentence>"}}"""

BUILT_IN = {"binary": BINARY, "dermbench": DERMBENCH}


class RubricError(ValueError):
    """A rubric file that cannot be used; the message names the file and the fix."""


@dataclass(frozen=True)
class Rubric:
    """A rubric: its name, kind ("binary" or "axes"), prompt text and the text's hash."""

    name: str
    kind: str
    text: str

    @property
    def hash(self) -> str:
        """blake2b of the system and rubric text: part of every cache key."""
        return hashlib.blake2b(f"{SYSTEM}\n{self.text}".encode(), digest_size=8).hexdigest()

    def prompt(self, question: str, reference: str, candidate: str) -> str:
        """The user message for one judged answer."""
        return _fill(self.text, question, reference, candidate)


def _fill(text: str, question: str, reference: str, candidate: str) -> str:
    """The rubric with its placeholders filled (literal braces written doubled, as str.format)."""
    return text.format(question=question, reference=reference, candidate=candidate)


def load_rubric(name_or_file: str) -> Rubric:
    """A built-in rubric (``binary``, ``dermbench``) or a binary rubric read from a UTF-8 file."""
    if name_or_file in BUILT_IN:
        return Rubric(name_or_file, "axes" if name_or_file == "dermbench" else "binary", BUILT_IN[name_or_file])
    path = Path(name_or_file)
    if not path.is_file():
        raise RubricError(f"--rubric {name_or_file}: neither a built-in rubric ({', '.join(BUILT_IN)}) nor a regular "
                          "file; pass one of those names or a text file.")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise RubricError(f"--rubric {path}: cannot read it as UTF-8 text ({err}); re-save it as UTF-8.") from None
    missing = [p for p in PLACEHOLDERS if p not in text]
    if missing:
        raise RubricError(f"--rubric {path}: the placeholder(s) {', '.join(missing)} are missing; the judge must see "
                          "the question, the reference and the candidate.")
    try:
        _fill(text, "q", "r", "c")
    except (KeyError, IndexError, ValueError) as err:
        raise RubricError(f"--rubric {path}: braces other than the placeholders ({err}); write literal braces "
                          "doubled: {{ and }}.") from None
    return Rubric(f"file:{path.name}", "binary", text)


def first_json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in ``text`` (prose or a code fence around it is ignored), else None."""
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start != -1:
        try:
            value, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            start = text.find("{", start + 1)
            continue
        if isinstance(value, dict):
            return value
        start = text.find("{", start + 1)
    return None


def parse_reply(text: str | None, kind: str) -> dict[str, Any] | None:
    """The verdict of a reply under the contract of ``kind``; None when the reply breaks it.

    binary -> ``{"verdict": "correct"|"incorrect", "reason": str}``;
    axes -> ``{"scores": {axis: int 1..5 for every axis}, "reason": str}``.
    """
    obj = first_json_object(text or "")
    if obj is None or not isinstance(obj.get("reason", ""), str):
        return None
    reason = " ".join(str(obj.get("reason", "")).split())
    if kind == "binary":
        verdict = obj.get("verdict")
        if not isinstance(verdict, str) or verdict.strip().lower() not in VERDICTS:
            return None
        return {"verdict": verdict.strip().lower(), "reason": reason}
    scores = obj.get("scores")
    if not isinstance(scores, dict):
        return None
    clean = {}
    for axis in AXES:
        value = scores.get(axis)
        # Range first: json reads Infinity and NaN, which int() cannot take (they fail the range test).
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 1 <= value <= 5 or value != int(value):
            return None
        clean[axis] = int(value)
    return {"scores": clean, "reason": reason}


__all__ = ["AXES", "BUILT_IN", "SYSTEM", "VERDICTS", "Rubric", "RubricError", "first_json_object", "load_rubric",
           "parse_reply"]
