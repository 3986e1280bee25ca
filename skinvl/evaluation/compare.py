"""``skinvl eval compare RUN_DIR ...``: one leaderboard and paired bootstrap CIs of the differences.

Each RUN_DIR is the ``--out`` of ``skinvl eval vqa``, ``eval score`` or ``eval zeroshot``
(results.json + predictions.csv with row ids). The runs must be of the same task, made on the same
rows of the same split with the same protocol and scoring settings; a difference is named and the
comparison refused unless ``--allow-mismatch`` (then CIs use the rows all runs share).

Outputs in ``--out``: ``results.json`` (the leaderboard, the differences and the bootstrap
settings), ``results.md`` (tables: overall and per modality for each protocol, then each run's
difference from the first with its 95% CI) and ``compare.png``.

Which metrics get a CI (see :mod:`skinvl.evaluation.bootstrap` for how each is recomputed):

- VQA ``paper``: bleu_1, bleu_4 (corpus nltk BLEU), rouge_l, meteor, bertscore_f1, token_recall;
- VQA ``standard``: sacrebleu (corpus), rouge_l, meteor, bertscore_f1, yes_no_accuracy;
- zero-shot (``robust`` and ``paper`` parsing): accuracy, macro_f1.

BLEU-2/3, ROUGE-1/2 and precision/recall variants are in the leaderboard but get no interval
(they move with the ones above). A metric missing from a run (e.g. BERTScore unavailable) is skipped.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mm_skin.csv_files import dict_rows
from skinvl.evaluation import bootstrap, report
from skinvl.evaluation.scoring import HEADLINE_METRICS

VQA_CI = HEADLINE_METRICS
ZEROSHOT_CI = ("accuracy", "macro_f1")
# predictions.csv column holding the per-sample value of a mean metric, per protocol.
MEAN_COLUMNS = {"paper": {"rouge_l": "rouge_l", "meteor": "meteor", "bertscore_f1": "bertscore_f1",
                          "token_recall": "token_recall"},
                "standard": {"rouge_l": "rouge_l_standard", "meteor": "meteor_standard", "bertscore_f1": "bertscore_f1"}}


class CompareError(ValueError):
    """Runs that cannot be compared; the message names the run, the difference and the fix."""


@dataclass(kw_only=True)
class CompareOptions:
    """``skinvl eval compare``: run folders (the first is the baseline), output, bootstrap settings."""

    runs: list[str] = field(metadata={"positional": True, "nargs": "+", "metavar": "RUN_DIR",
                                      "help": "run folders (results.json + predictions.csv); the first is the baseline"})
    out: str = field(metadata={"help": "output folder (results.json, results.md, compare.png)"})
    resamples: int = field(default=1000, metadata={"help": "bootstrap resamples"})
    seed: int = field(default=0, metadata={"help": "bootstrap seed (numpy Generator)"})
    allow_mismatch: bool = field(default=False, metadata={
        "help": "compare runs made on different rows, splits, protocols or scoring settings (CIs on shared rows)"})
    figure_metric: str = field(default="rouge_l", metadata={"help": "metric drawn in compare.png (VQA)"})
    name: str | None = field(default=None, metadata={"help": "title of the leaderboard (default: Leaderboard)"})


@dataclass
class Run:
    """One run folder: its label, results.json and scored rows (by id)."""

    folder: Path
    name: str
    doc: dict[str, Any]
    rows: dict[str, dict[str, str]]


def load_run(folder: str | Path) -> Run:
    """Read a run folder's results.json and predictions.csv (rows keyed by id)."""
    folder = Path(folder)
    results, scored = folder / "results.json", folder / "predictions.csv"
    for path in (results, scored):
        if not path.is_file():
            raise CompareError(f"{folder}: no {path.name}; pass the --out folder of a `skinvl eval` run.")
    try:
        doc = json.loads(results.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise CompareError(f"{results}: not valid JSON ({err.msg}).") from err
    if doc.get("task") not in ("vqa", "zero-shot-classification"):
        raise CompareError(f"{results}: task {doc.get('task')!r} cannot be compared; use VQA or zero-shot runs.")
    with scored.open(newline="", encoding="utf-8") as f:
        table = list(dict_rows(f))
    if not table or not all(r.get("id") for r in table):
        raise CompareError(f"{scored}: rows without an 'id'; re-score the run with `skinvl eval score --data ...` "
                           "so that rows can be paired.")
    rows = {r["id"]: r for r in table}
    if len(rows) != len(table):
        raise CompareError(f"{scored}: a row id appears twice; every row needs its own id.")
    return Run(folder, doc.get("name") or folder.name, doc, rows)


def _setting(run: Run, what: str) -> Any:
    doc = run.doc
    # VQA rows are identified by content-tracking question ids; zero-shot rows by their label file's row.
    labels = Path(doc["dataset"]).name if doc.get("task") == "zero-shot-classification" and doc.get("dataset") else None
    return {"task": doc.get("task"), "split": doc.get("split"), "config": doc.get("config"),
            "protocol": doc.get("protocol"), "scoring settings": doc.get("settings"), "label file": labels,
            "classes": doc.get("classes")}[what]


SETTINGS = ("task", "split", "config", "protocol", "scoring settings", "label file", "classes")


def mismatches(runs: Sequence[Run]) -> list[str]:
    """Each way a run differs from the first: task, split, config, protocol, settings, labels, rows."""
    base, found = runs[0], []
    for run in runs[1:]:
        for what in SETTINGS:
            if _setting(run, what) != _setting(base, what):
                found.append(f"{run.folder}: {what} {_setting(run, what)!r}, but {base.folder} has {_setting(base, what)!r}")
        if set(run.rows) != set(base.rows):
            only_run, only_base = set(run.rows) - set(base.rows), set(base.rows) - set(run.rows)
            found.append(f"{run.folder}: rows differ from {base.folder} ({len(only_run)} only here, {len(only_base)} "
                         f"only there, e.g. {sorted(only_run or only_base)[0]!r})")
    return found


def _vqa_statistics(run: Run, ids: Sequence[str], protocol: str) -> dict[str, bootstrap.Statistic]:
    rows = [run.rows[i] for i in ids]
    preds, refs = [r["prediction"] for r in rows], [r["answer"] for r in rows]
    stats: dict[str, bootstrap.Statistic] = {}
    for metric, column in MEAN_COLUMNS[protocol].items():
        if all(r.get(column) not in (None, "") for r in rows):
            stats[metric] = bootstrap.mean_statistic([float(r[column]) for r in rows])
    if protocol == "paper":
        stats.update(bootstrap.nltk_bleu_statistics(preds, refs, bootstrap.PAPER_BLEU))
    else:
        stats["sacrebleu"] = bootstrap.sacrebleu_statistic(preds, refs)
        stats["yes_no_accuracy"] = bootstrap.yes_no_statistic(preds, refs)
    return {m: stats[m] for m in VQA_CI[protocol] if m in stats}


def _zeroshot_statistics(run: Run, ids: Sequence[str], protocol: str) -> dict[str, bootstrap.Statistic]:
    rows = [run.rows[i] for i in ids]
    truth = [r["label"] for r in rows]
    guess = [r[f"prediction_{protocol}"] or None for r in rows]
    correct = [float(g == t) for g, t in zip(guess, truth, strict=True)]
    return {"accuracy": bootstrap.mean_statistic(correct),
            "macro_f1": bootstrap.macro_f1_statistic(truth, guess, run.doc["classes"])}


def protocols_of(run: Run) -> tuple[str, ...]:
    """The protocols a run has metrics for (VQA: paper/standard; zero-shot: robust/paper parsing)."""
    if run.doc["task"] == "vqa":
        return tuple(run.doc.get("metrics", {}))
    return tuple(run.doc.get("metrics_by_protocol", {}))


def leaderboard(runs: Sequence[Run]) -> dict[str, dict[str, dict[str, dict]]]:
    """``{protocol: {group: {run name: metrics}}}``, group "overall" then each modality (VQA)."""
    board: dict[str, dict[str, dict[str, dict]]] = {}
    for run in runs:
        for protocol in protocols_of(run):
            groups = board.setdefault(protocol, {})
            if run.doc["task"] == "vqa":
                overall = run.doc["metrics"][protocol]
                per_group = {"overall": {**overall, "n": run.doc.get("n_samples")},
                             **run.doc.get("per_modality", {}).get(protocol, {})}
            else:
                per_group = {"overall": run.doc["metrics_by_protocol"][protocol]}
            for group, values in per_group.items():
                groups.setdefault(group, {})[run.name] = values
    return board


def _unique_names(runs: Sequence[Run]) -> None:
    seen: dict[str, int] = {}
    for run in runs:
        if run.name in seen:  # two runs with one label: keep them apart in every table
            seen[run.name] += 1
            run.name = f"{run.name} ({run.folder.name})"
        seen.setdefault(run.name, 1)


def compare_runs(options: CompareOptions) -> dict[str, Any]:
    """Load, check, rank and bootstrap; write results.json, results.md and compare.png; the payload."""
    if options.resamples < 1:
        raise CompareError(f"--resamples {options.resamples}: need at least 1.")
    runs = [load_run(folder) for folder in options.runs]
    _unique_names(runs)
    if len({r.doc["task"] for r in runs}) > 1 or len(runs) < 1:
        raise CompareError("the runs are of different tasks (VQA and zero-shot); compare each task separately.")
    found = mismatches(runs)
    if found and not options.allow_mismatch:
        raise CompareError(f"{found[0]}{f' (+{len(found) - 1} more)' if len(found) > 1 else ''}. Runs on different "
                           "rows, splits, protocols or scoring settings are not comparable; re-run them alike, or pass "
                           "--allow-mismatch (intervals then use the rows all runs share).")
    base = runs[0]
    ids = [i for i in base.rows if all(i in r.rows for r in runs[1:])]
    if not ids:
        raise CompareError("the runs share no row ids; they were made on different splits.")
    statistics = _vqa_statistics if base.doc["task"] == "vqa" else _zeroshot_statistics
    shared = [p for p in protocols_of(base) if all(p in protocols_of(r) for r in runs[1:])]
    differences, methods = {}, {}
    for protocol in shared:
        stats = {run.name: statistics(run, ids, protocol) for run in runs}
        common = [m for m in stats[base.name] if all(m in s for s in stats.values())]
        methods[protocol] = {m: stats[base.name][m].method for m in common}
        differences[protocol] = bootstrap.paired_differences(
            {m: stats[base.name][m] for m in common},
            {r.name: {m: stats[r.name][m] for m in common} for r in runs[1:]},
            len(ids), resamples=options.resamples, seed=options.seed)
    payload = {
        "task": "compare", "name": options.name or "Leaderboard", "compared_task": base.doc["task"], "baseline": base.name,
        "runs": [{"name": r.name, "folder": str(r.folder), "model": r.doc.get("model"), "rows": len(r.rows),
                  "split": r.doc.get("split"), "protocol": r.doc.get("protocol"), "coverage": r.doc.get("coverage")}
                 for r in runs],
        "leaderboard": leaderboard(runs), "differences": differences, "mismatches": found,
        "bootstrap": {"resamples": options.resamples, "seed": options.seed, "confidence": 0.95, "rows": len(ids),
                      "paired": True, "interval": "percentile", "methods": methods},
        "files": {"markdown": "results.md", "figure": "compare.png"},
    }
    _write_outputs(Path(options.out), payload, options.figure_metric)
    return payload


def _difference_table(per_run: dict[str, dict[str, dict]]) -> str:
    metrics = list(next(iter(per_run.values()), {}))
    lines = ["| run | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
    for run, values in per_run.items():
        cells = [f"{100 * v['delta']:+.2f} [{100 * v['ci_low']:+.2f}, {100 * v['ci_high']:+.2f}]{' *' if v['real'] else ''}"
                 for v in values.values()]
        lines.append(f"| {run} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _write_outputs(out: Path, payload: dict[str, Any], figure_metric: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    report.write_results_json(out, payload)
    boot = payload["bootstrap"]
    lines = [f"# {payload['name']} ({payload['compared_task']}), baseline: {payload['baseline']}", ""]
    if payload["mismatches"]:
        lines += ["**Compared despite differences (--allow-mismatch):**", ""]
        lines += [f"- {m}" for m in payload["mismatches"]] + [""]
    for protocol, groups in payload["leaderboard"].items():
        for group, by_run in groups.items():
            columns = list(dict.fromkeys(k for values in by_run.values() for k in values if k != "n"))
            lines += [f"## Protocol `{protocol}`: {group} (x100)", "",
                      report.markdown_table(by_run, ["n", *columns], "run"), ""]
    for protocol, per_run in payload["differences"].items():
        lines += [f"## Difference from {payload['baseline']}, protocol `{protocol}` (x100, paired bootstrap 95% CI)", "",
                  _difference_table(per_run), ""]
    lines += [f"Bootstrap: {boot['resamples']} resamples of the {boot['rows']} shared rows (row ids drawn jointly "
              f"for all runs), seed {boot['seed']}, percentile intervals; * = the interval excludes 0."]
    report.write_markdown(out, "\n".join(lines))
    _plot(out, payload["leaderboard"], figure_metric if payload["compared_task"] == "vqa" else "accuracy")


def _plot(out: Path, board: dict[str, dict[str, dict[str, dict]]], metric: str) -> Path:
    """One panel per protocol: groups (overall, modalities) on x, one bar per run, ``metric`` x100."""
    plt = report.pyplot()
    protocols = list(board)
    fig, axes = plt.subplots(1, max(1, len(protocols)), figsize=(6 * max(1, len(protocols)), 4), squeeze=False)
    for ax, protocol in zip(axes[0], protocols, strict=False):
        groups = list(board[protocol])
        names = list(dict.fromkeys(n for g in groups for n in board[protocol][g]))
        width, peak = 0.8 / max(1, len(names)), 0.0
        for j, name in enumerate(names):
            ys = [100 * (board[protocol][g].get(name, {}).get(metric) or 0.0) for g in groups]
            peak = max(peak, *ys)
            ax.bar([i + j * width for i in range(len(groups))], ys, width=width, label=name)
        ax.set_ylim(0, max(5.0, peak * 1.25))  # room for the legend above the bars
        ax.set_xticks([i + width * (len(names) - 1) / 2 for i in range(len(groups))])
        ax.set_xticklabels(groups)
        ax.set_title(f"{metric} ({protocol} protocol)")
        ax.set_ylabel("score x100")
        ax.legend(fontsize="small", loc="upper center", ncol=min(4, max(1, len(names))))
    fig.tight_layout()
    path = out / "compare.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


__all__ = ["CompareError", "CompareOptions", "Run", "compare_runs", "leaderboard", "load_run", "mismatches"]
