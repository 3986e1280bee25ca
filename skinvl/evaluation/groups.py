"""Classification metrics per group of a column (skin type, sex, site...), with intervals and
the gap between the worst and the best group.

For each group: accuracy, balanced accuracy (mean recall over the classes present in the
group) and, where class probabilities exist, AUROC (binary, or macro one-vs-rest over the classes
present). Each comes with a percentile bootstrap interval (:data:`RESAMPLES` resamples, seeded)
that resamples IMAGES: rows of one image id are drawn together, so a test file listing an image
twice does not narrow the interval. Across groups, per metric: the worst group and its value, the
best, the best-worst gap and the worst/best ratio. Groups smaller than :data:`MIN_GROUP` images are
reported but left out of worst/best (their value is mostly noise). A missing value is the group
``unknown``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from skinvl.evaluation.bootstrap import Resampling, cluster_index

RESAMPLES = 1000
CONFIDENCE = 0.95
MIN_GROUP = 10
UNKNOWN = "unknown"


def _balanced(truth: np.ndarray, pred: np.ndarray) -> float:
    classes = np.unique(truth)
    return float(np.mean([np.mean(pred[truth == c] == c) for c in classes]))


def auroc(truth: np.ndarray, proba: np.ndarray) -> float:
    """AUROC of class probabilities ``proba`` (rows x classes) for class indices ``truth``: binary,
    or the mean one-vs-rest AUROC over the classes present; NaN with fewer than two classes present."""
    from sklearn.metrics import roc_auc_score

    present = np.unique(truth)
    if len(present) < 2:
        return float("nan")
    if proba.shape[1] == 2:
        return float(roc_auc_score(truth, proba[:, 1]))
    return float(np.mean([roc_auc_score(truth == c, proba[:, c]) for c in present]))


def _one_group(truth: np.ndarray, pred: np.ndarray, proba: np.ndarray | None, images: np.ndarray,
               seed: int) -> dict[str, Any]:
    metrics = {"accuracy": lambda i: float(np.mean(truth[i] == pred[i])),
               "balanced_accuracy": lambda i: _balanced(truth[i], pred[i])}
    if proba is not None:
        metrics["auroc"] = lambda i: auroc(truth[i], proba[i])
    everything = np.arange(len(truth))
    # The evaluation's one resampler: an image's rows are drawn together (the counts become row indices,
    # since AUROC and balanced accuracy need the rows themselves).
    resampling = Resampling(RESAMPLES, seed, CONFIDENCE, cluster_index(list(images))[0])
    draws = [np.repeat(everything, counts.astype(int)) for block in resampling.blocks(len(truth)) for counts in block]
    out: dict[str, Any] = {"n": len(truth), "images": len(set(images))}
    for name, metric in metrics.items():
        value = metric(everything)
        low, high = resampling.bounds(np.array([metric(d) for d in draws], dtype=float))
        out[name] = {"value": value if np.isfinite(value) else None,
                     "ci": [float(low) if np.isfinite(low) else None, float(high) if np.isfinite(high) else None]}
    return out


def group_metrics(truth: Sequence[str], pred: Sequence[str | None], classes: Sequence[str], groups: Sequence[Any],
                  image_ids: Sequence[str], proba: np.ndarray | None = None, *, column: str,
                  seed: int = 0) -> dict[str, Any]:
    """Per-group metrics with image-resampled intervals, and worst / best / gap / ratio per metric.

    ``pred`` None (unparseable) counts as wrong; ``proba`` (rows x classes) enables AUROC.
    """
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[t] for t in truth])
    p = np.array([index.get(x, -1) if x is not None else -1 for x in pred])
    names = np.array([UNKNOWN if g is None or str(g).strip() == "" else str(g) for g in groups], dtype=object)
    ids = np.array(list(image_ids), dtype=object)
    per_group = {}
    for g in sorted(set(names), key=lambda s: (s == UNKNOWN, s)):
        rows = np.flatnonzero(names == g)
        per_group[g] = _one_group(y[rows], p[rows], None if proba is None else proba[rows], ids[rows], seed)
    return {"column": column, "resamples": RESAMPLES, "confidence": CONFIDENCE, "resampled": "images",
            "min_group_for_gap": MIN_GROUP, "groups": per_group, "gaps": _gaps(per_group)}


def _gaps(per_group: dict[str, dict[str, Any]]) -> dict[str, Any]:
    gaps = {}
    metrics = [m for m in ("accuracy", "balanced_accuracy", "auroc") if any(m in g for g in per_group.values())]
    for metric in metrics:
        values = {g: v[metric]["value"] for g, v in per_group.items()
                  if g != UNKNOWN and v["n"] >= MIN_GROUP and v[metric]["value"] is not None}
        if len(values) < 2:
            gaps[metric] = {"note": f"fewer than two known groups with {MIN_GROUP}+ images"}
            continue
        worst, best = min(values, key=values.get), max(values, key=values.get)
        gaps[metric] = {"worst_group": worst, "worst": values[worst], "best_group": best, "best": values[best],
                        "gap": values[best] - values[worst],
                        "ratio": values[worst] / values[best] if values[best] else None}
    return gaps


def groups_markdown(result: dict[str, Any]) -> str:
    """The groups table and the gap lines for results.md."""
    metrics = [m for m in ("accuracy", "balanced_accuracy", "auroc") if m in next(iter(result["groups"].values()))]
    header = f"| {result['column']} | n | " + " | ".join(metrics) + " |"
    lines = [f"## By {result['column']}", "", header, "|" + "---|" * (2 + len(metrics))]
    for g, v in result["groups"].items():
        cells = []
        for m in metrics:
            value, (lo, hi) = v[m]["value"], v[m]["ci"]
            cells.append("n/a" if value is None else f"{value:.3f} [{lo:.3f}, {hi:.3f}]" if lo is not None
                         else f"{value:.3f}")
        lines.append(f"| {g} | {v['n']} | " + " | ".join(cells) + " |")
    lines += ["", f"Intervals: {int(result['confidence'] * 100)}% percentile bootstrap, {result['resamples']} "
              "resamples of images within each group.", ""]
    for m, gap in result["gaps"].items():
        if "note" in gap:
            lines.append(f"- {m}: {gap['note']}")
        else:
            ratio = "n/a" if gap["ratio"] is None else f"{gap['ratio']:.3f}"
            lines.append(f"- {m}: worst {gap['worst_group']} {gap['worst']:.3f}, best {gap['best_group']} "
                         f"{gap['best']:.3f}; gap {gap['gap']:.3f}, worst/best {ratio}")
    return "\n".join(lines) + "\n"


__all__ = ["MIN_GROUP", "RESAMPLES", "auroc", "group_metrics", "groups_markdown"]
