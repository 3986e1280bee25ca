"""One scoring pass per lmms-eval run, shared by every metric of the ``mmskin_vqa`` task.

lmms-eval imports ``utils.py`` afresh, by path, for each ``!function`` tag of the YAML, so a cache
kept in utils.py would exist nine times and the corpus would be scored nine times (nine BERTScore
passes). This module is imported the ordinary way (``sys.modules``), so all those copies share
its cache: the first aggregation scores the records, the others read the result.

Scale: every metric is on 0-1, exactly the value ``skinvl eval score`` writes to results.json
(``metrics[protocol][metric]``; SacreBLEU divided by 100 there and here).
"""

from __future__ import annotations

import sys
from typing import Any

from skinvl.evaluation.predictions import VQASample
from skinvl.evaluation.scoring import PROTOCOLS, ScoreResult, score_vqa

_cache: dict[tuple, ScoreResult] = {}
passes = 0  # scoring passes run in this process (one per task and set of answers)


def score_records(records: list[dict[str, Any]]) -> ScoreResult:
    """Score ``process_results`` records (question_id, question, answer, prediction) once."""
    global passes
    key = tuple((r["question_id"], r["answer"], r["prediction"]) for r in records)
    if key not in _cache:
        _cache.clear()  # one task's list at a time
        samples = [VQASample(r["question"], r["answer"], r["prediction"], id=r["question_id"]) for r in records]
        _cache[key] = score_vqa(samples, PROTOCOLS)
        passes += 1
        for metric, why in _cache[key].unavailable.items():
            print(f"mmskin_vqa: {metric} unavailable ({why['reason']}) Fix: {why['fix']}", file=sys.stderr)
    return _cache[key]
