"""How far a judge can be trusted: agreement with people, with another judge, and its length bias.

- :func:`agreement`: two sets of binary verdicts on the same answers (a judge and human labels
  from ``--human FILE``, or two judges): raw agreement and Cohen's kappa (scikit-learn's
  ``cohen_kappa_score``) with a percentile bootstrap interval that resamples images (every answer
  of an image together), as every interval of the evaluation does.
- :func:`verbosity_probe`: the judge grades, for the same questions, the reference itself and the
  reference followed by neutral padding that adds no medical content; a fair judge accepts both
  equally. The length bias is accuracy(padded) - accuracy(plain), with an exact McNemar p-value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from skinvl.evaluation.bootstrap import Resampling, cluster_index, mcnemar_exact
from skinvl.evaluation.predictions import PredictionsFileError, iter_rows

# Padding with no medical content: a candidate that is the reference plus this is as correct as the reference.
PADDING = (" I hope this explanation is helpful. Please note that this answer is based on the information that is "
           "available, and it is always a good idea to discuss any questions or concerns with a qualified healthcare "
           "professional, who can take your full history and circumstances into account.")
HUMAN_VERDICTS = {"correct": True, "incorrect": False, "1": True, "0": False, "true": True, "false": False,
                  "yes": True, "no": False}


def read_human(path: str | Path) -> dict[str, bool]:
    """``--human FILE``: a CSV or JSONL of ``id, verdict`` (correct/incorrect, 1/0, true/false, yes/no)."""
    labels: dict[str, bool] = {}
    for row, where in iter_rows(path):
        row_id, verdict = row.get("id"), str(row.get("verdict", "")).strip().lower()
        if row_id in (None, "") or verdict not in HUMAN_VERDICTS:
            raise PredictionsFileError(f"{where}: need an 'id' and a 'verdict' (correct or incorrect), got id "
                                       f"{row_id!r}, verdict {row.get('verdict')!r}; fix the row.")
        if str(row_id) in labels:
            raise PredictionsFileError(f"{where}: id {row_id!r} is labelled twice; keep one verdict per id.")
        labels[str(row_id)] = HUMAN_VERDICTS[verdict]
    if not labels:
        raise PredictionsFileError(f"{path}: no verdicts in the file.")
    return labels


def agreement(first: dict[str, bool], second: dict[str, bool], image_of: dict[str, str | None], *,
              resampling: Resampling | None = None) -> dict[str, Any]:
    """Agreement and Cohen's kappa (95% image-resampled interval) of two verdict sets on their shared ids."""
    from sklearn.metrics import cohen_kappa_score

    ids = [i for i in first if i in second]
    out: dict[str, Any] = {"n": len(ids), "only_first": len(set(first) - set(second)),
                           "only_second": len(set(second) - set(first))}
    if not ids:
        return {**out, "agreement": None, "kappa": None, "kappa_ci": None}
    a = np.asarray([first[i] for i in ids], dtype=int)
    b = np.asarray([second[i] for i in ids], dtype=int)
    clusters, unit = cluster_index([image_of.get(i) for i in ids])
    resampling = resampling or Resampling()
    resampling = Resampling(resampling.resamples, resampling.seed, resampling.confidence, clusters)

    def kappa(x: np.ndarray, y: np.ndarray, weight: np.ndarray | None = None) -> float:
        if len(set(x.tolist()) | set(y.tolist())) < 2:
            return 1.0 if np.array_equal(x, y) else 0.0  # one label only: kappa is undefined (sklearn: NaN)
        return float(cohen_kappa_score(x, y, sample_weight=weight))

    draws = [kappa(a, b, counts) if counts.sum() else math.nan
             for block in resampling.blocks(len(ids)) for counts in block]
    low, high = resampling.bounds(np.asarray(draws))
    return {**out, "agreement": float(np.mean(a == b)), "kappa": kappa(a, b), "kappa_ci": [low, high],
            "unit": unit, "resamples": resampling.resamples}


def verbosity_items(rows: Sequence[dict[str, str]], limit: int) -> list[tuple[dict[str, str], str, str]]:
    """(row, plain candidate, padded candidate) for the first ``limit`` rows: the reference, then reference + padding."""
    return [(row, row["answer"], row["answer"].rstrip() + PADDING) for row in rows[:limit]]


def verbosity_summary(plain: Sequence[bool | None], padded: Sequence[bool | None]) -> dict[str, Any]:
    """The length bias from the judge's verdicts on plain and padded references (unjudged pairs left out)."""
    pairs = [(x, y) for x, y in zip(plain, padded, strict=True) if x is not None and y is not None]
    if not pairs:
        return {"n": 0, "accuracy_plain": None, "accuracy_padded": None, "length_bias": None, "p_value": None}
    x, y = zip(*pairs, strict=True)
    test = mcnemar_exact(x, y)
    return {"n": len(pairs), "padding_words": len(PADDING.split()), "accuracy_plain": float(np.mean(x)),
            "accuracy_padded": float(np.mean(y)), "length_bias": float(np.mean(y) - np.mean(x)),
            "p_value": test["p_value"], "test": "exact McNemar", "unjudged_pairs": len(plain) - len(pairs)}


__all__ = ["PADDING", "agreement", "read_human", "verbosity_items", "verbosity_summary"]
