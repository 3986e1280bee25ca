"""``skinvl eval compare RUN_DIR ...``: one leaderboard with intervals, and honest tests of the differences.

Each RUN_DIR is the ``--out`` of ``skinvl eval vqa``, ``eval score``, ``eval judge`` or ``eval
zeroshot`` (results.json + predictions.csv with row ids). The runs must be of the same task, made on
the same rows of the same split with the same protocol, scoring settings and (judged runs) judge
and rubric; a difference is named and the comparison refused unless ``--allow-mismatch`` (then
intervals use the rows all runs share).

Outputs in ``--out``: ``results.json`` (the leaderboard, the interval of every cell, the differences
with their tests, each run's image gain over its blind run, the bootstrap settings), ``results.md``
(a provenance block; tables overall and per modality for each protocol, each cell ``value [95%
CI]``; each run's difference from the first; the image gains; the smallest detectable difference)
and ``compare.png``.

Intervals resample images (every question of a drawn image together; rows when the runs carry no
image ids) with the same draws for every run, and recompute each metric per resample (see
:mod:`skinvl.evaluation.bootstrap`). Differences of the headline metrics get a paired interval and a
test: exact McNemar for judge accuracy and yes/no accuracy, the bootstrap p-value otherwise, Holm
across the metrics of a run; a difference is real when its adjusted p < 0.05 on at least 30 shared
rows (fewer: "too few").

Which metrics get intervals in the cells: VQA ``paper`` bleu_1..4 (corpus nltk BLEU), rouge_l,
meteor, bertscore_f1, token_recall; ``standard`` sacrebleu (corpus), rouge_l, meteor, bertscore_f1,
yes_no_accuracy; ``judge`` judge_accuracy; zero-shot accuracy and macro_f1. ROUGE-1/2, BERTScore
precision/recall and yes/no F1 have no per-row values in predictions.csv and are shown without one.
A metric missing from a run (e.g. BERTScore unavailable) is skipped.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mm_skin.csv_files import dict_rows
from skinvl.evaluation import bootstrap, report
from skinvl.evaluation.provenance_header import provenance_items
from skinvl.evaluation.scoring import HEADLINE_METRICS, PAPER_BLEU_WEIGHTS, first_word

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


def load_run(folder: str | Path, *, require_ids: bool = True) -> Run:
    """Read a run folder's results.json and predictions.csv (rows keyed by id; without ``require_ids``, rows
    lacking one are keyed ``row-N`` by their position, enough to judge them but not to pair them)."""
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
    if not require_ids:
        for number, row in enumerate(table, start=1):
            row["id"] = row.get("id") or f"row-{number}"
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
    judge = doc.get("judge") or {}
    return {"task": doc.get("task"), "split": doc.get("split"), "config": doc.get("config"),
            "protocol": doc.get("protocol"), "scoring settings": doc.get("settings"), "label file": labels,
            "classes": doc.get("classes"),
            "judge": (judge.get("id"), (judge.get("rubric") or {}).get("hash")) if judge else None}[what]


SETTINGS = ("task", "split", "config", "protocol", "scoring settings", "label file", "classes", "judge")


def mismatches(runs: Sequence[Run]) -> list[str]:
    """Each way a run differs from the first: task, split, config, protocol, settings, labels, rows."""
    base, found = runs[0], []
    for run in runs[1:]:
        for what in SETTINGS:
            if what == "judge" and None in (_setting(run, what), _setting(base, what)):
                continue  # an unjudged run is compared on the other protocols; judged ones must share the judge
            if _setting(run, what) != _setting(base, what):
                found.append(f"{run.folder}: {what} {_setting(run, what)!r}, but {base.folder} has {_setting(base, what)!r}")
        if set(run.rows) != set(base.rows):
            only_run, only_base = set(run.rows) - set(base.rows), set(base.rows) - set(run.rows)
            found.append(f"{run.folder}: rows differ from {base.folder} ({len(only_run)} only here, {len(only_base)} "
                         f"only there, e.g. {sorted(only_run or only_base)[0]!r})")
    return found


def _vqa_statistics(run: Run, ids: Sequence[str], protocol: str, every: bool = False) -> dict[str, bootstrap.Statistic]:
    """The recomputable metrics of a VQA run on ``ids``: the headline ones, or ``every`` one (leaderboard cells)."""
    rows = [run.rows[i] for i in ids]
    preds, refs = [r["prediction"] for r in rows], [r["answer"] for r in rows]
    stats: dict[str, bootstrap.Statistic] = {}
    for metric, column in MEAN_COLUMNS[protocol].items():
        if all(r.get(column) not in (None, "") for r in rows):
            stats[metric] = bootstrap.mean_statistic([float(r[column]) for r in rows])
    if protocol == "paper":
        stats.update(bootstrap.nltk_bleu_statistics(preds, refs, PAPER_BLEU_WEIGHTS if every else bootstrap.PAPER_BLEU))
    else:
        stats["sacrebleu"] = bootstrap.sacrebleu_statistic(preds, refs)
        stats["yes_no_accuracy"] = bootstrap.yes_no_statistic(preds, refs)
    return stats if every else {m: stats[m] for m in VQA_CI[protocol] if m in stats}


def judge_verdicts(run: Run) -> dict[str, bool | None]:
    """Row id -> judged correct (True/False), None when unjudged or failed; empty for an unjudged run."""
    from mm_skin.paths import UnsafePathError, resolve_inside

    name = (run.doc.get("judge") or {}).get("verdicts")
    if not name:
        return {}
    try:  # the name comes from results.json: it must stay inside the run folder
        path = resolve_inside(run.folder, str(name), what="verdict files", where="the run folder")
    except UnsafePathError as err:
        raise CompareError(f"{run.folder}/results.json: judge.verdicts {name!r}: {err}") from None
    return read_verdicts(path) if path.is_file() else {}


def read_verdicts(path: Path) -> dict[str, bool | None]:
    """A ``judge-*.jsonl`` file: row id -> correct (True/False) for binary verdicts, None when
    unjudged or failed; a line that is not JSON is a one-line :class:`CompareError`."""
    out: dict[str, bool | None] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise CompareError(f"{path}, line {number}: not valid JSON ({err.msg}); rerun `skinvl eval judge`.") from err
        if "verdict" in record or record.get("status") != "judged":
            out[str(record.get("id"))] = (record["verdict"] == "correct") if record.get("status") == "judged" else None
    return out


def _judge_statistics(run: Run, ids: Sequence[str], protocol: str) -> dict[str, bootstrap.Statistic]:
    verdicts = judge_verdicts(run)
    if not verdicts or "judge_accuracy" not in run.doc["metrics"].get("judge", {}):
        return {}
    values = [verdicts.get(i) for i in ids]
    return {"judge_accuracy": bootstrap.ratio_statistic([float(bool(v)) for v in values],
                                                        [float(v is not None) for v in values],
                                                        "ratio: judged correct / judged")}


def binary_outcomes(run: Run, ids: Sequence[str], metric: str, protocol: str) -> list[bool | None]:
    """Per row: the paired binary outcome behind ``metric`` (judge_accuracy, yes_no_accuracy, zero-shot
    accuracy under ``protocol``'s parsing), None where undefined."""
    if run.doc["task"] != "vqa":
        return [run.rows[i][f"prediction_{protocol}"] == run.rows[i]["label"] for i in ids]
    if metric == "judge_accuracy":
        verdicts = judge_verdicts(run)
        return [verdicts.get(i) for i in ids]
    out: list[bool | None] = []
    for i in ids:
        reference, prediction = run.rows[i]["answer"], run.rows[i]["prediction"]
        yes_no = first_word(reference) in ("yes", "no")
        out.append(first_word(prediction) == first_word(reference) if yes_no else None)
    return out


BINARY_METRICS = ("judge_accuracy", "yes_no_accuracy", "accuracy")  # accuracy: zero-shot


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


def _statistics_of(task: str, protocol: str):
    if task != "vqa":
        return _zeroshot_statistics
    return _judge_statistics if protocol == "judge" else _vqa_statistics


def _groups_of(run: Run, ids: Sequence[str]) -> dict[str, list[str]]:
    """"overall" and (VQA) each modality: the ids of each leaderboard group."""
    groups = {"overall": list(ids)}
    if run.doc["task"] == "vqa":
        for i in ids:
            modality = run.rows[i].get("modality")
            if modality:
                groups.setdefault(modality, []).append(i)
    return groups


def _resampling(base: Run, ids: Sequence[str], options: CompareOptions) -> tuple[bootstrap.Resampling, str]:
    clusters, unit = bootstrap.cluster_index([base.rows[i].get("image_id") for i in ids])
    return bootstrap.Resampling(options.resamples, options.seed, 0.95, clusters), unit


def cell_intervals(runs: Sequence[Run], ids: Sequence[str], protocols: Sequence[str],
                   options: CompareOptions) -> dict[str, dict[str, dict[str, dict]]]:
    """``{protocol: {group: {run: {metric: {value, ci_low, ci_high, se, detectable}}}}}``: every leaderboard cell
    with a recomputable metric gets its own interval (images resampled within the group)."""
    out: dict[str, dict[str, dict[str, dict]]] = {}
    for protocol in protocols:
        statistics = _statistics_of(runs[0].doc["task"], protocol)
        for group, members in _groups_of(runs[0], ids).items():
            resampling, _ = _resampling(runs[0], members, options)
            for run in runs:
                stats = statistics(run, members, protocol, every=True) if statistics is _vqa_statistics else \
                    statistics(run, members, protocol)
                if stats:
                    cells = bootstrap.intervals(stats, len(members), resampling)
                    out.setdefault(protocol, {}).setdefault(group, {})[run.name] = cells
    return out


def _mcnemar(base: Run, other: Run, ids: Sequence[str], metric: str, protocol: str) -> dict[str, Any]:
    pairs = [(x, y) for x, y in zip(binary_outcomes(base, ids, metric, protocol),
                                    binary_outcomes(other, ids, metric, protocol), strict=True)
             if x is not None and y is not None]
    if not pairs:
        return {"test": "exact McNemar", "n": 0, "p_value": float("nan")}
    x, y = zip(*pairs, strict=True)
    return {"test": "exact McNemar", "n": len(pairs), **bootstrap.mcnemar_exact(x, y)}


def _tests(differences: dict[str, dict[str, dict[str, dict]]], runs: Sequence[Run], ids: Sequence[str]) -> None:
    """Exact McNemar for paired binary metrics, then Holm across every metric shown for each run, in place.

    ``real``: the Holm-adjusted p < 0.05, at least MIN_SHARED_ROWS rows behind the test ("too few" otherwise)
    and a difference a table can show (not ``negligible``).
    """
    base = runs[0]
    for run in runs[1:]:
        p_values = {}
        for protocol, per_run in differences.items():
            for metric, value in per_run.get(run.name, {}).items():
                if metric in BINARY_METRICS:
                    value.update(_mcnemar(base, run, ids, metric, protocol))
                else:
                    value["n"] = len(ids)
                p_values[(protocol, metric)] = value["p_value"]
        for (protocol, metric), (adjusted, rejected) in bootstrap.holm(p_values).items():
            value = differences[protocol][run.name][metric]
            value["too_few"] = value["n"] < bootstrap.MIN_SHARED_ROWS
            value["negligible"] = bool(abs(value["delta"]) < bootstrap.NEGLIGIBLE_DIFFERENCE)
            value.update(p_holm=adjusted, real=bool(rejected and not value["too_few"] and not value["negligible"]))


def _differences(runs: Sequence[Run], base: Run, ids: Sequence[str], protocols: Sequence[str],
                 options: CompareOptions) -> tuple[dict[str, Any], dict[str, Any]]:
    """Paired differences of ``runs`` from ``base`` per protocol (image-resampled) and how each metric is recomputed."""
    resampling, _ = _resampling(base, ids, options)
    differences, methods = {}, {}
    for protocol in protocols:
        statistics = _statistics_of(base.doc["task"], protocol)
        stats = {run.name: statistics(run, ids, protocol) for run in [base, *runs]}
        common = [m for m in stats[base.name] if all(m in s for s in stats.values())]
        if not common:
            continue
        methods[protocol] = {m: stats[base.name][m].method for m in common}
        differences[protocol] = bootstrap.paired_differences(
            {m: stats[base.name][m] for m in common}, {r.name: {m: stats[r.name][m] for m in common} for r in runs},
            len(ids), resamples=options.resamples, seed=options.seed, clusters=resampling.clusters)
    _tests(differences, [base, *runs], ids)
    return differences, methods


def model_key(run: Run) -> Any:
    """What identifies the model of a run (a blind run and its seeing run share it)."""
    info = run.doc.get("model_info") or {}
    return info.get("weights_blake2b") or info.get("model") or info.get("model_name") or run.doc.get("model")


def image_gains(runs: Sequence[Run], ids: Sequence[str], protocols: Sequence[str],
                options: CompareOptions) -> dict[str, dict[str, Any]]:
    """``{run: {"blind_run", "differences": {protocol: {metric: ...}}}}``: each run minus its blind run."""
    blind = {model_key(r): r for r in runs if r.doc.get("blind")}
    out = {}
    for run in runs:
        partner = blind.get(model_key(run)) if not run.doc.get("blind") else None
        if partner is not None and model_key(run) is not None:
            differences, _ = _differences([run], partner, ids, protocols, options)
            out[run.name] = {"blind_run": partner.name,
                             "differences": {p: d[run.name] for p, d in differences.items()}}
    return out


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
    shared = [p for p in protocols_of(base) if all(p in protocols_of(r) for r in runs[1:])]
    differences, methods = _differences(runs[1:], base, ids, shared, options)
    unit = _resampling(base, ids, options)[1]
    payload = {
        "task": "compare", "name": options.name or "Leaderboard", "compared_task": base.doc["task"], "baseline": base.name,
        "runs": [{"name": r.name, "folder": str(r.folder), "model": r.doc.get("model"), "rows": len(r.rows),
                  "split": r.doc.get("split"), "protocol": r.doc.get("protocol"), "coverage": r.doc.get("coverage"),
                  "blind": bool(r.doc.get("blind"))} for r in runs],
        "leaderboard": leaderboard(runs), "intervals": cell_intervals(runs, ids, shared, options),
        "differences": differences, "image_gain": image_gains(runs, ids, shared, options), "mismatches": found,
        "bootstrap": {"resamples": options.resamples, "seed": options.seed, "confidence": 0.95, "rows": len(ids),
                      "unit": unit, "clusters": len(set(base.rows[i].get("image_id") for i in ids)) if unit == "image"
                      else len(ids), "paired": True, "interval": "percentile", "methods": methods,
                      "tests": "exact McNemar (judge_accuracy, yes_no_accuracy, zero-shot accuracy), bootstrap p otherwise; Holm across "
                      "the metrics of each run", "min_rows": bootstrap.MIN_SHARED_ROWS},
        "files": {"markdown": "results.md", "figure": "compare.png"}, "provenance": runs_header(runs),
    }
    _write_outputs(Path(options.out), payload, options.figure_metric)
    return payload


def _difference_table(per_run: dict[str, dict[str, dict]]) -> str:
    metrics = list(dict.fromkeys(m for values in per_run.values() for m in values))
    lines = ["| run | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
    for run, values in per_run.items():
        cells = [_difference_cell(values[m]) if m in values else "n/a" for m in metrics]
        lines.append(f"| {run} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _difference_cell(v: dict[str, Any]) -> str:
    mark = " (too few)" if v.get("too_few") else (" *" if v["real"] else "")
    p = v.get("p_holm")
    return (f"{100 * v['delta']:+.2f} [{100 * v['ci_low']:+.2f}, {100 * v['ci_high']:+.2f}]"
            f"{f' p={p:.3g}' if p is not None and p == p else ''}{mark}")


def _board_table(by_run: dict[str, dict], cells: dict[str, dict]) -> str:
    """A leaderboard table; a metric with an interval shows ``value [low, high]``."""
    columns = list(dict.fromkeys(k for values in by_run.values() for k in values if k != "n"))
    lines = ["| run | n | " + " | ".join(columns) + " |", "|" + "---|" * (len(columns) + 2)]
    for name, values in by_run.items():
        row = [name, report.format_cell(values.get("n"))]
        for column in columns:
            interval = cells.get(name, {}).get(column)
            text = report.format_cell(values.get(column))
            if interval and interval["ci_low"] == interval["ci_low"]:
                text += f" [{100 * interval['ci_low']:.2f}, {100 * interval['ci_high']:.2f}]"
            row.append(text)
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _write_outputs(out: Path, payload: dict[str, Any], figure_metric: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    report.write_results_json(out, payload)
    boot = payload["bootstrap"]
    lines = [f"# {payload['name']} ({payload['compared_task']}), baseline: {payload['baseline']}", "",
             *payload["provenance"], ""]
    if payload["mismatches"]:
        lines += ["**Compared despite differences (--allow-mismatch):**", ""]
        lines += [f"- {m}" for m in payload["mismatches"]] + [""]
    blind = [r["name"] for r in payload["runs"] if r["blind"]]
    if blind:
        lines += [f"Blind runs (no image, see each run's results.md): {', '.join(blind)}.", ""]
    for protocol, groups in payload["leaderboard"].items():
        for group, by_run in groups.items():
            cells = payload["intervals"].get(protocol, {}).get(group, {})
            lines += [f"## Protocol `{protocol}`: {group} (x100, 95% CI)", "", _board_table(by_run, cells), ""]
    for protocol, per_run in payload["differences"].items():
        lines += [f"## Difference from {payload['baseline']}, protocol `{protocol}` (x100, paired bootstrap 95% CI, "
                  "Holm-adjusted p)", "", _difference_table(per_run), ""]
    for run, gain in payload["image_gain"].items():
        for protocol, values in gain["differences"].items():
            lines += [f"## Image gain of {run} (minus its blind run {gain['blind_run']}), protocol `{protocol}` (x100)",
                      "", _difference_table({run: values}), ""]
    lines += _detectable_lines(payload)
    lines += [f"Bootstrap: {boot['resamples']} resamples of the {boot['clusters']} {boot['unit']}s behind the "
              f"{boot['rows']} shared rows (drawn jointly for all runs; every question of a drawn image counted), seed "
              f"{boot['seed']}, percentile intervals. Tests: {boot['tests']}; * = a real difference (adjusted p < 0.05); "
              f"differences on fewer than {boot['min_rows']} rows are marked too few, never real."]
    report.write_markdown(out, "\n".join(lines))
    _plot(out, payload["leaderboard"], figure_metric if payload["compared_task"] == "vqa" else "accuracy")


def runs_header(runs: Sequence[Run]) -> list[str]:
    """The provenance block of a leaderboard: each run's model, dataset, decoding and judge, then tool and date."""
    from mm_skin import __version__
    from skinvl.evaluation.runs import now

    lines = []
    for run in runs:
        head = provenance_items(run.doc)
        lines.append(f"- {run.name}{' (blind)' if run.doc.get('blind') else ''}: model {head['Model']}; dataset "
                     f"{head['Dataset']}; decoding {head['Decoding']}; judge {head['Judge']}")
    return [*lines, f"- Tool: skinvl {__version__}; date: {now()}"]


def _detectable_lines(payload: dict[str, Any]) -> list[str]:
    """The smallest difference detectable at this size, from the baseline's own overall intervals."""
    parts = []
    for protocol, groups in payload["intervals"].items():
        cells = groups.get("overall", {}).get(payload["baseline"], {})
        parts += [f"{protocol} {m} {100 * c['detectable']:.2f}" for m, c in cells.items() if c["detectable"] == c["detectable"]]
    if not parts:
        return []
    return [f"Smallest detectable difference at this size (x100; two-sided 5%, power 80%, vs an independent run of "
            f"{payload['bootstrap']['rows']} rows): {'; '.join(parts)}.", ""]


def compare_figure(board: dict[str, dict[str, dict[str, dict]]], metric: str) -> Any:
    """One panel per protocol: groups (overall, modalities) on x, one bar per run, ``metric`` x100.

    One legend for all panels sits outside them, right of the last one (constrained layout makes
    room for it), so no number of runs hides a bar; a run keeps its colour in every panel.
    """
    plt = report.pyplot()
    protocols = list(board)
    every = list(dict.fromkeys(n for p in protocols for g in board[p].values() for n in g))
    colours = {name: f"C{k % 10}" for k, name in enumerate(every)}
    fig, axes = plt.subplots(1, max(1, len(protocols)), figsize=(6 * max(1, len(protocols)) + 2.5, 4),
                             squeeze=False, layout="constrained")
    handles: dict[str, Any] = {}
    for ax, protocol in zip(axes[0], protocols, strict=False):
        groups = list(board[protocol])
        names = list(dict.fromkeys(n for g in groups for n in board[protocol][g]))
        width, peak = 0.8 / max(1, len(names)), 0.0
        for j, name in enumerate(names):
            ys = [100 * (board[protocol][g].get(name, {}).get(metric) or 0.0) for g in groups]
            peak = max(peak, *ys)
            handles[name] = ax.bar([i + j * width for i in range(len(groups))], ys, width=width, label=name,
                                   color=colours[name])
        ax.set_ylim(0, max(5.0, peak * 1.05))
        ax.set_xticks([i + width * (len(names) - 1) / 2 for i in range(len(groups))])
        ax.set_xticklabels(groups)
        ax.set_title(f"{metric} ({protocol} protocol)")
        ax.set_ylabel("score x100")
    if handles:
        fig.legend([handles[n] for n in every if n in handles], [n for n in every if n in handles],
                   loc="outside right upper", fontsize="small")
    return fig


def _plot(out: Path, board: dict[str, dict[str, dict[str, dict]]], metric: str) -> Path:
    """Write :func:`compare_figure` to ``out/compare.png``."""
    plt = report.pyplot()
    fig = compare_figure(board, metric)
    path = out / "compare.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


__all__ = ["CompareError", "CompareOptions", "Run", "compare_runs", "leaderboard", "load_run", "mismatches"]
