"""Paired bootstrap confidence intervals for differences between runs on the same rows.

Every metric is written as a function of column sums of a per-row statistics matrix ``S`` (rows x
k). A bootstrap resample draws the rows with replacement; the same draw is used for every run
(paired: row ids are resampled jointly), so each resample is a count vector ``w`` and the
resampled statistics are ``w @ S``, computed for a block of resamples as one matrix product
(numpy, a seeded ``numpy.random.Generator``). The metric is then recomputed from the sums:

- per-sample means (ROUGE-L, METEOR, BERTScore F1, token recall, accuracy): ``S`` = the value;
- ratios (yes/no accuracy over the yes/no questions): ``S`` = [numerator, denominator];
- corpus BLEU, recomputed exactly per resample from its sufficient statistics: nltk's (the paper's
  ``corpus_bleu``: clipped n-gram matches and counts per sentence from ``modified_precision``,
  hypothesis and reference lengths) and sacrebleu's (``BLEU._extract_corpus_statistics``), so
  the corpus metric itself is resampled, not a per-sentence stand-in;
- macro F1 (zero-shot), recomputed from per-class true positive / false positive / false
  negative counts.

The interval is the percentile interval of (metric of run - metric of the base run) over the
resamples. The resampled unit is the image when every row names one (the 5,452 test questions share
4,391 images: questions of one image are not independent), else the row; the unit is recorded.
Paired binary metrics (judge accuracy, yes/no) are also tested with an exact McNemar test, every
other metric with the bootstrap p-value, and :func:`holm` corrects across the metrics shown; a
difference on fewer than :data:`MIN_SHARED_ROWS` shared rows is never called real ("too few").

Why not ``scipy.stats.bootstrap(paired=True)``: it resamples the data itself (a copy per resample,
strings for corpus BLEU) once per call, i.e. per run and metric, so sharing one draw across all runs
and metrics would mean re-seeding and redoing it each time; its percentile interval is not NaN-aware
(a resample without a yes/no question). One count matrix per block, times each statistics matrix,
gives every run and metric the same draws in a few matrix products.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from skinvl.evaluation.scoring import PAPER_BLEU_WEIGHTS, first_word

PAPER_BLEU = {m: PAPER_BLEU_WEIGHTS[m] for m in ("bleu_1", "bleu_4")}  # the BLEUs that get a CI


@dataclass
class Statistic:
    """A metric as ``value(sums)``: ``matrix`` is rows x k, ``value`` maps (B, k) column sums to (B,)."""

    matrix: np.ndarray
    value: Callable[[np.ndarray], np.ndarray]
    method: str  # how the metric is recomputed per resample, for the report


def mean_statistic(values: Sequence[float]) -> Statistic:
    """The mean of a per-sample value: sum / count of the resample (resampled images hold varying numbers of rows)."""
    matrix = np.column_stack([np.asarray(values, dtype=float), np.ones(len(values))])
    return Statistic(matrix, lambda sums: sums[:, 0] / sums[:, 1], "mean of per-sample values")


def ratio_statistic(numerator: Sequence[float], denominator: Sequence[float], method: str) -> Statistic:
    """sum(numerator) / sum(denominator) (NaN where the resample holds no denominator)."""
    matrix = np.column_stack([np.asarray(numerator, dtype=float), np.asarray(denominator, dtype=float)])

    def value(sums: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(sums[:, 1] > 0, sums[:, 0] / sums[:, 1], np.nan)

    return Statistic(matrix, value, method)


def yes_no_statistic(predictions: Sequence[str], references: Sequence[str]) -> Statistic:
    """The standard protocol's yes/no accuracy: first words equal, over references starting yes / no."""
    is_yes_no = [float(first_word(r) in ("yes", "no")) for r in references]
    hit = [y * (first_word(p) == first_word(r)) for y, p, r in zip(is_yes_no, predictions, references, strict=True)]
    return ratio_statistic(hit, is_yes_no, "ratio: correct / yes-no questions")


def nltk_bleu_statistics(predictions: Sequence[str], references: Sequence[str],
                         weights: dict[str, Sequence[float]]) -> dict[str, Statistic]:
    """The paper's nltk ``corpus_bleu`` (whitespace tokens, no smoothing) for each named weight tuple.

    One per-sentence statistics matrix (clipped matches and counts for n = 1..4 from nltk's
    ``modified_precision``, hypothesis and closest reference length) serves every weight tuple.
    """
    from nltk.translate.bleu_score import closest_ref_length, modified_precision

    rows = []
    for prediction, reference in zip(predictions, references, strict=True):
        hyp, refs = prediction.split(), [reference.split()]
        precisions = [modified_precision(refs, hyp, n) for n in range(1, 5)]
        rows.append([p.numerator for p in precisions] + [p.denominator for p in precisions]
                    + [len(hyp), closest_ref_length(refs, len(hyp))])
    matrix = np.asarray(rows, dtype=float).reshape(-1, 10)
    method = "corpus BLEU (nltk) recomputed from per-sentence n-gram statistics"
    return {name: Statistic(matrix, _nltk_bleu(np.asarray(w, dtype=float)), method) for name, w in weights.items()}


def _nltk_bleu(w: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    def value(sums: np.ndarray) -> np.ndarray:
        num, den, hyp_len, ref_len = sums[:, :4], sums[:, 4:8], sums[:, 8], sums[:, 9]
        # nltk's method0: a zero n-gram precision becomes the smallest float (log ~ -708).
        with np.errstate(divide="ignore", invalid="ignore"):
            log_p = np.where(num > 0, np.log(np.where(num > 0, num, 1.0) / den), math.log(sys.float_info.min))
            bp = np.where(hyp_len > ref_len, 1.0, np.where(hyp_len > 0, np.exp(1 - ref_len / np.maximum(hyp_len, 1)), 0.0))
        return np.where(num[:, 0] > 0, bp * np.exp(log_p @ w), 0.0)

    return value


def sacrebleu_statistic(predictions: Sequence[str], references: Sequence[str]) -> Statistic:
    """sacrebleu ``corpus_bleu`` / 100, recomputed by sacrebleu itself from summed sentence statistics."""
    import sacrebleu

    bleu = sacrebleu.BLEU()
    # The library's own per-sentence statistics and its own scoring from their sums: exact corpus BLEU.
    stats = np.asarray(bleu._extract_corpus_statistics(list(predictions), [list(references)]), dtype=float)

    def value(sums: np.ndarray) -> np.ndarray:
        return np.array([bleu._compute_score_from_stats([int(round(v)) for v in row]).score / 100 for row in sums])

    return Statistic(stats, value, "corpus BLEU (sacrebleu) recomputed from per-sentence statistics")


def macro_f1_statistic(truth: Sequence[str], predicted: Sequence[str | None], classes: Sequence[str]) -> Statistic:
    """Macro F1 over ``classes`` (sklearn's, zero_division=0) from per-class TP/FP/FN indicators."""
    t = np.asarray([[y == c for c in classes] for y in truth], dtype=float)
    p = np.asarray([[y == c for c in classes] for y in predicted], dtype=float)
    matrix = np.hstack([t * p, (1 - t) * p, t * (1 - p)])
    k = len(classes)

    def value(sums: np.ndarray) -> np.ndarray:
        tp, fp, fn = sums[:, :k], sums[:, k:2 * k], sums[:, 2 * k:]
        denominator = 2 * tp + fp + fn
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = np.where(denominator > 0, 2 * tp / np.where(denominator > 0, denominator, 1), 0.0)
        return f1.mean(axis=1)

    return Statistic(matrix, value, "macro F1 recomputed from per-class TP/FP/FN counts")


def cluster_index(keys: Sequence[str | None]) -> tuple[np.ndarray | None, str]:
    """(cluster number per row, unit): rows sharing an image id form one cluster ("image"); without
    an image id on every row the rows themselves are the unit ("row")."""
    if not keys or any(k in (None, "") for k in keys):
        return None, "row"
    numbers: dict[str, int] = {}
    return np.asarray([numbers.setdefault(str(k), len(numbers)) for k in keys]), "image"


def resample_blocks(n: int, resamples: int, seed: int, block: int = 250, clusters: np.ndarray | None = None):
    """Yield (B, n) float count matrices of rows drawn with replacement; the same seed, the same draws.

    With ``clusters`` (a cluster number per row, e.g. the row's image) whole clusters are drawn with
    replacement and every row of a drawn cluster is counted once per draw: the questions of one image
    are not independent, so they are resampled together.
    """
    rng = np.random.default_rng(seed)
    units = n if clusters is None else int(clusters.max()) + 1
    done = 0
    while done < resamples:
        b = min(block, resamples - done)
        picks = rng.integers(0, units, size=(b, units)) + (np.arange(b) * units)[:, None]
        counts = np.bincount(picks.ravel(), minlength=b * units).reshape(b, units).astype(float)
        yield counts if clusters is None else counts[:, clusters]
        done += b


def observed(stat: Statistic) -> float:
    """The metric on all rows (every count 1)."""
    return float(stat.value(stat.matrix.sum(axis=0, keepdims=True))[0])


# Two-sided 5 % test with 80 % power: a difference of (z_0.975 + z_0.8) standard errors is detected.
DETECTABLE_Z = 1.959964 + 0.841621
MIN_SHARED_ROWS = 30  # fewer shared rows: no difference is called real ("too few")
# Half of the 0.01 points that tables show on the x100 scale: a difference no table can show (e.g. two
# corpus BLEU-4 values of 1e-155 and 3e-155, whose interval still excludes 0) is never called real.
NEGLIGIBLE_DIFFERENCE = 5e-5


@dataclass
class Resampling:
    """How intervals are drawn: resamples, seed, confidence and the cluster of each row (None: rows)."""

    resamples: int = 1000
    seed: int = 0
    confidence: float = 0.95
    clusters: np.ndarray | None = None

    def blocks(self, n: int):
        """The count matrices of :func:`resample_blocks` for these settings."""
        return resample_blocks(n, self.resamples, self.seed, clusters=self.clusters)

    def bounds(self, draws: np.ndarray) -> tuple[float, float]:
        """The percentile interval of ``draws`` (NaN resamples ignored)."""
        alpha = (1 - self.confidence) / 2
        if np.all(np.isnan(draws)):
            return math.nan, math.nan
        low, high = np.nanquantile(draws, [alpha, 1 - alpha])
        return float(low), float(high)


def intervals(stats: dict[str, Statistic], n: int, resampling: Resampling) -> dict[str, dict[str, float]]:
    """``{metric: {value, ci_low, ci_high, se, detectable}}`` of one run: percentile intervals and the
    smallest difference from an equally sized independent run detected with 80 % power at 5 %."""
    draws: dict[str, list[np.ndarray]] = {m: [] for m in stats}
    for counts in resampling.blocks(n):
        for metric, stat in stats.items():
            draws[metric].append(stat.value(counts @ stat.matrix))
    out = {}
    for metric, chunks in draws.items():
        values = np.concatenate(chunks)
        low, high = resampling.bounds(values)
        se = float(np.nanstd(values, ddof=1)) if np.sum(~np.isnan(values)) > 1 else math.nan
        out[metric] = {"value": observed(stats[metric]), "ci_low": low, "ci_high": high, "se": se,
                       "detectable": DETECTABLE_Z * math.sqrt(2) * se}
    return out


def paired_differences(base: dict[str, Statistic], others: dict[str, dict[str, Statistic]], n: int, *,
                       resamples: int = 1000, seed: int = 0, confidence: float = 0.95,
                       clusters: np.ndarray | None = None) -> dict[str, dict[str, dict]]:
    """``{run: {metric: {delta, ci_low, ci_high, p_value, real}}}``: run minus base, percentile CIs, shared draws.

    ``p_value`` is the bootstrap's two-sided one (twice the smaller tail around 0); ``real`` is the
    interval excluding 0 on at least :data:`MIN_SHARED_ROWS` rows for a difference of at least
    :data:`NEGLIGIBLE_DIFFERENCE` (:func:`holm` may refine it).
    """
    resampling = Resampling(resamples, seed, confidence, clusters)
    draws: dict[tuple[str, str], list[np.ndarray]] = {}
    for counts in resampling.blocks(n):
        base_values = {m: s.value(counts @ s.matrix) for m, s in base.items()}
        for run, stats in others.items():
            for metric, stat in stats.items():
                draws.setdefault((run, metric), []).append(stat.value(counts @ stat.matrix) - base_values[metric])
    out: dict[str, dict[str, dict]] = {run: {} for run in others}
    for (run, metric), chunks in draws.items():
        diffs = np.concatenate(chunks)
        low, high = resampling.bounds(diffs)
        kept = diffs[~np.isnan(diffs)]
        # +1 on both sides: a bootstrap p-value is never below 1 / (resamples + 1).
        tail = min(np.sum(kept <= 0), np.sum(kept >= 0))
        p = min(1.0, 2 * (tail + 1) / (kept.size + 1)) if kept.size else math.nan
        delta = observed(others[run][metric]) - observed(base[metric])
        negligible = bool(abs(delta) < NEGLIGIBLE_DIFFERENCE)
        out[run][metric] = {"delta": delta, "ci_low": low, "ci_high": high, "p_value": float(p), "test": "bootstrap",
                            "real": bool((low > 0 or high < 0) and n >= MIN_SHARED_ROWS and not negligible),
                            "too_few": n < MIN_SHARED_ROWS, "negligible": negligible}
    return out


def mcnemar_exact(base_correct: Sequence[bool], other_correct: Sequence[bool]) -> dict[str, float | int]:
    """Exact McNemar test of two paired binary outcomes: a binomial test on the discordant pairs."""
    from scipy.stats import binomtest

    b = sum(1 for x, y in zip(base_correct, other_correct, strict=True) if x and not y)
    c = sum(1 for x, y in zip(base_correct, other_correct, strict=True) if y and not x)
    p = binomtest(c, b + c, 0.5).pvalue if b + c else 1.0
    return {"base_only": b, "other_only": c, "p_value": float(p)}


def holm(p_values: dict[str, float], alpha: float = 0.05) -> dict[str, tuple[float, bool]]:
    """Holm's step-down correction: ``{name: (adjusted p, rejected)}`` (NaN p-values are never rejected)."""
    ordered = sorted(((p, k) for k, p in p_values.items() if not math.isnan(p)))
    m, running, out = len(ordered), 0.0, {}
    for i, (p, name) in enumerate(ordered):
        running = max(running, min(1.0, (m - i) * p))
        out[name] = (running, running < alpha)
    for name in p_values:
        out.setdefault(name, (math.nan, False))
    return out


__all__ = ["MIN_SHARED_ROWS", "NEGLIGIBLE_DIFFERENCE", "PAPER_BLEU", "Resampling", "Statistic", "cluster_index", "holm", "intervals",
           "macro_f1_statistic", "mcnemar_exact", "mean_statistic", "nltk_bleu_statistics", "observed",
           "paired_differences", "ratio_statistic", "resample_blocks", "sacrebleu_statistic", "yes_no_statistic"]
