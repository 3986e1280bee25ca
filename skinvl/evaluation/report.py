"""Write an evaluation's outputs: results.json, a Markdown table, per-sample CSV and a PNG figure.

Every ``skinvl eval`` command writes into its ``--out`` folder:

- ``results.json``: the machine-readable result (schema in :mod:`skinvl.evaluation`);
- ``results.md``: the same numbers as Markdown tables (metrics x100, 2 decimals);
- ``predictions.csv``: one row per sample (question/answer/prediction or image/label/prediction);
- a PNG: per-modality scores for VQA (``vqa_scores.png``), the confusion matrix for classification
  (``confusion_matrix.png``).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Sequence
from pathlib import Path

SCHEMA_VERSION = 1


def _jsonable(value):
    """Floats that are NaN/inf become None so that results.json stays strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return _jsonable(value.item())
    return value


def write_results_json(out_dir: str | Path, payload: dict) -> Path:
    """Write ``results.json`` (adds schema_version and created_at) and return its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"schema_version": SCHEMA_VERSION, **payload}
    doc.setdefault("created_at", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    path = out / "results.json"
    path.write_text(json.dumps(_jsonable(doc), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def _cell(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return f"{100 * value:.2f}"


def markdown_table(rows: dict[str, dict], columns: Sequence[str], first: str = "") -> str:
    """A Markdown table: one row per key of ``rows``; fractions shown x100, counts as is."""
    lines = ["| " + " | ".join([first, *columns]) + " |", "|" + "---|" * (len(columns) + 1)]
    for name, values in rows.items():
        lines.append("| " + " | ".join([name, *(_cell(values.get(c)) for c in columns)]) + " |")
    return "\n".join(lines)


def unavailable_notes(unavailable: dict[str, dict[str, str]]) -> str:
    """Markdown bullet list saying why a metric is missing and how to fix it."""
    if not unavailable:
        return ""
    lines = ["", "Unavailable metrics (reported as n/a, never 0):", ""]
    for metric, why in unavailable.items():
        lines.append(f"- **{metric}**: {why['reason']} Fix: `{why['fix']}`")
    return "\n".join(lines)


def write_markdown(out_dir: str | Path, text: str) -> Path:
    """Write ``results.md``."""
    path = Path(out_dir) / "results.md"
    path.write_text(text.rstrip() + "\n", encoding="utf-8")
    return path


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only)."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def plot_vqa(
    out_dir: str | Path, per_group: dict[str, dict], metrics: Sequence[str], title: str, note: str = ""
) -> Path:
    """Grouped bar chart: one group of bars per modality (and overall), one bar per metric.

    Metrics that are unavailable everywhere are left out; ``note`` (e.g. which ones and why) is
    printed under the chart.
    """
    plt = pyplot()
    groups = list(per_group)
    shown = [m for m in metrics if any(per_group[g].get(m) is not None for g in groups)]
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(groups) + 2), 4))
    width = 0.8 / max(1, len(shown))
    for j, metric in enumerate(shown):
        xs = [i + j * width for i in range(len(groups))]
        ys = [100 * (per_group[g].get(metric) or 0.0) for g in groups]
        ax.bar(xs, ys, width=width, label=metric)
    ax.set_xticks([i + width * (len(shown) - 1) / 2 for i in range(len(groups))])
    ax.set_xticklabels([f"{g}\n(n={per_group[g].get('n', '?')})" for g in groups])
    peak = max((100 * (per_group[g].get(m) or 0.0) for g in groups for m in shown), default=0.0)
    ax.set_ylim(0, max(5.0, peak * 1.15))  # a run of zeros still gets a readable axis
    ax.set_ylabel("score x100")
    ax.set_title(title)
    if shown:
        ax.legend(fontsize="small", ncol=min(4, len(shown)))
    if note:
        fig.text(0.01, 0.01, note, fontsize="x-small", ha="left", va="bottom")
    fig.tight_layout(rect=(0, 0.05 if note else 0, 1, 1))
    path = Path(out_dir) / "vqa_scores.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_confusion(out_dir: str | Path, matrix, row_labels: Sequence[str], col_labels: Sequence[str], title: str) -> Path:
    """Confusion matrix heat map with counts (rows: true class, columns: predicted)."""
    plt = pyplot()
    n_rows, n_cols = len(row_labels), len(col_labels)
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * n_cols + 2, 1.0 + 0.6 * n_rows + 1.5))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(n_cols))
    ax.set_xticklabels(col_labels, rotation=45, ha="right")
    ax.set_yticks(range(n_rows))
    ax.set_yticklabels(row_labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    peak = max((max(r) for r in matrix), default=0) or 1
    for i in range(n_rows):
        for j in range(n_cols):
            v = matrix[i][j]
            ax.text(j, i, str(int(v)), ha="center", va="center", color="white" if v > peak / 2 else "black")
    ax.set_title(title)
    fig.tight_layout()
    path = Path(out_dir) / "confusion_matrix.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def format_cell(value) -> str:
    """One table cell as every results.md writes it: fractions x100 with 2 decimals, counts as is, None as n/a."""
    return _cell(value)
