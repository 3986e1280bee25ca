"""``skinvl eval {vqa,score,zeroshot,compare,judge,probe}``: each sub-command derived from its options dataclass.

The options live next to the code that uses them (``VQAOptions`` in vqa.py, ``ZeroShotOptions``
in zeroshot.py, ...); this file only wires them to ``mm_skin.cli.add_command`` and turns known
errors into one line and an exit code.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mm_skin.cli import EXIT_CODES_HELP, ExitCode, OptionsParser, add_command, print_problem
from skinvl.evaluation.compare import CompareError, CompareOptions, compare_runs
from skinvl.evaluation.endpoint import EndpointError
from skinvl.evaluation.judge import JudgeError, JudgeOptions, judge_runs
from skinvl.evaluation.judge_rubrics import RubricError
from skinvl.evaluation.labels import LabelFileError
from skinvl.evaluation.lmms_eval_task.task_folder import LmmsTaskOptions, run_lmms_task
from skinvl.evaluation.predictions import PredictionsFileError
from skinvl.evaluation.prepare_metrics import PrepareMetricsOptions, run_prepare_metrics
from skinvl.evaluation.probe import ProbeOptions, run_probe
from skinvl.evaluation.runs import RunError
from skinvl.evaluation.vqa import ScoreFileOptions, VQAOptions, run_score, run_vqa
from skinvl.evaluation.zeroshot import (
    ZeroShotOptions,
    export_prompts,
    run_zeroshot,
    zeroshot_inputs,
)
from skinvl.evaluation.zeroshot_protocols import mcq_rows
from skinvl.inference.images import ImageFileError
from skinvl.inference.options import ModelError

# Bad input of any kind: one line naming the file / row / value and the fix, exit code 2.
BAD_INPUT = (EndpointError, ImageFileError, LabelFileError, ModelError, PredictionsFileError, RunError)


def _report(payload: dict[str, Any] | None, out: str) -> int:
    if payload is None:  # a non-main rank of a data-parallel run: rank 0 reports
        return ExitCode.OK
    for line in payload.get("warnings") or []:  # input problems the run recorded in results.json
        print_problem(line, "warning")
    for metric, why in (payload.get("unavailable") or {}).items():
        print_problem(f"{metric} unavailable: {why['reason']} Fix: {why['fix']}", "note")
    fallback = (payload.get("paper_rouge_fallback") or {}).get("count", 0)
    if fallback:
        print_problem(f"{fallback} row(s) the paper's `rouge` package cannot score were scored by rouge-score "
                      "(counted in results.json: paper_rouge_fallback).", "note")
    failed = (payload.get("failed") or {}).get("count", 0)
    if failed:
        print(f"warning: {failed} question(s) failed and are not scored (reasons in results.json); "
              "rerun the same command with --resume to ask them again.", file=sys.stderr)
    coverage = payload.get("coverage") or {}
    if coverage.get("checked") is False:
        print("note: coverage not checked (no --data): a subset of the split would go unnoticed; pass --data to "
              "match the answers to the split's rows.", file=sys.stderr)
    elif coverage and not coverage.get("complete", True):
        print(f"warning: scored {coverage['answered']} of {coverage['rows_in_split']} rows (partial; recorded in "
              "results.json): not comparable with full runs.", file=sys.stderr)
    print(f"wrote {out}/results.json, results.md, predictions and the figure")
    return ExitCode.OK


def _guarded(work: Callable[[Any], dict[str, Any] | None], summary: Callable[[dict], str] | None = None):
    """``run(options)`` for add_command: bad input -> one line + exit 2; a summary line; the report."""

    def run(options: Any) -> int:
        try:
            payload = work(options)
        except BAD_INPUT as err:
            print_problem(err)
            return ExitCode.BAD_INPUT
        if payload is not None and summary is not None:
            print(summary(payload["metrics"]))
        return _report(payload, options.out)

    return run


def _zeroshot(options: ZeroShotOptions) -> dict[str, Any] | None:
    """``eval zeroshot``: with --export-prompts write the prompts and stop (no payload), else run and score."""
    if not options.export_prompts:
        return run_zeroshot(options)
    labels, rows, _, refs = zeroshot_inputs(options)
    for line in labels.warnings():
        print_problem(line, "warning")
    if options.protocol == "mcq":  # the lettered questions, one row per (image, option order)
        rows = mcq_rows(rows, labels.classes)
    path = export_prompts(rows, [refs[row.index] for row in rows], options.export_prompts)
    print(f"wrote {len(rows)} prompts to {path}: answer each, then score them with --predictions FILE "
          "(JSON lines with the same 'id' and your model's 'prediction')")
    return None


def _compare(options: CompareOptions) -> int:
    try:
        payload = compare_runs(options)
    except (CompareError, PredictionsFileError) as err:
        print_problem(err)
        return ExitCode.BAD_INPUT
    for protocol, per_run in payload["differences"].items():
        for run, values in per_run.items():
            real = [m for m, v in values.items() if v["real"]]
            print(f"{protocol}: {run} vs {payload['baseline']}: real differences in {', '.join(real) or 'none'}")
    print(f"wrote {options.out}/results.json, results.md and compare.png")
    return ExitCode.OK


def _judge(options: JudgeOptions) -> int:
    """``eval judge``: one summary line per run; bad input -> one line + exit 2."""
    try:
        payload = judge_runs(options)
    except (*BAD_INPUT, CompareError, JudgeError, RubricError) as err:
        print_problem(err)
        return ExitCode.BAD_INPUT
    for folder, section in payload["runs"].items():
        doc = json.loads((Path(folder) / "results.json").read_text(encoding="utf-8"))
        m = doc["metrics"]["judge"]
        score = m.get("judge_accuracy")
        head = f"judge accuracy {100 * score:.2f}" if score is not None else "axis means in results.json"
        print(f"{folder}: {head}  judged {m['judged']}/{m['n']}  unjudged {m['unjudged']}  failed {m['failed']}")
        if m["failed"]:
            print(f"warning: {folder}: {m['failed']} answer(s) got no reply from the judge; rerun the same command to "
                  "ask them again (verdicts already given are cached).", file=sys.stderr)
        probe = section.get("verbosity_probe")
        if probe and probe.get("n"):
            print(f"verbosity probe: length bias {100 * probe['length_bias']:+.1f} points (p = {probe['p_value']:.3g})")
    print(f"wrote judge-*.jsonl, results.json and results.md in {len(payload['runs'])} run folder(s)")
    return ExitCode.OK


def _zeroshot_line(m: dict) -> str:
    return f"accuracy {m['accuracy']:.4f}  macro F1 {m['macro_f1']:.4f}  unparseable {m['unparseable']}/{m['n']}"


def _probe_line(m: dict) -> str:
    return f"accuracy {m['accuracy']:.4f}  macro F1 {m['macro_f1']:.4f}  AUROC {m['auroc']}"


COMMANDS: tuple[tuple[str, type, Callable[[Any], int], str, str], ...] = (
    ("vqa", VQAOptions, _guarded(run_vqa), "answer the MM-Skin VQA split with any model, then score",
     "Answers every question of a VQA split (load_dataset(DATA, CONFIG, split=SPLIT)) with a local model "
     "(--model) or a served one (--endpoint), appending them to OUT/predictions.jsonl as they come "
     "(--resume continues a killed run; `accelerate launch --num_processes N` shards the rows), then "
     "scores them like `eval score`."),
    ("score", ScoreFileOptions, _guarded(lambda o: run_score(o.predictions, o.out, protocols=o.protocols(),
                                                            settings=o.settings(), name=o.name, split=o)),
     "score answers made elsewhere: our CSV/JSONL, lmms-eval sample logs, VLMEvalKit .xlsx/.tsv",
     "Score FILE: ours (columns prediction and id, or question, answer, prediction [, modality, image_id]), an "
     "lmms-eval --log_samples file (*_samples_*.jsonl) or a VLMEvalKit result (.xlsx/.tsv). With --data the "
     "answers are matched to the split's rows by id (reference and modality from the dataset) and answers "
     "covering only part of it are refused unless --allow-partial. Blank predictions are scored (0 ROUGE) and "
     "counted."),
    ("zeroshot", ZeroShotOptions, _guarded(_zeroshot, _zeroshot_line),
     "generative zero-shot classification with the paper's prompt",
     "Ask 'This is a skin lesion image. From the following categories: ..., which one is the diagnosis?' "
     "for each image of a label CSV or of a benchmark folder / Hub id (--data; `mm-skin benchmark build`) with a "
     "local model or --endpoint (resumable), and parse the answer with the paper's and the robust parser; or "
     "--protocol mcq (lettered options in several orders) or likelihood (class names scored by the model). "
     "--group-by COLUMN adds per-group metrics with intervals and the worst-best gap. Answers made elsewhere: "
     "--export-prompts FILE writes the exact prompts, --predictions FILE scores the answers (ours, an lmms-eval "
     "sample log or a VLMEvalKit sheet), matched by image id."),
    ("compare", CompareOptions, _compare, "leaderboard of several runs + paired bootstrap CIs of their differences",
     "Compare run folders (VQA or zero-shot, the first is the baseline): results.md/results.json/compare.png with "
     "overall and per-modality scores for each protocol (judged runs: judge accuracy), each with a 95% CI that "
     "resamples images, and each run's difference from the first with a paired CI, exact McNemar tests for paired "
     "binary metrics and a Holm correction (no real difference on fewer than 30 rows); a run and a --blind run of "
     "the same model give the image gain. Runs on different rows, splits, protocols, scoring settings or judges "
     "are refused unless --allow-mismatch."),
    ("judge", JudgeOptions, _judge, "judged scoring of open answers by a served or local judge model",
     "Ask a judge model (--judge-endpoint URL --judge-model NAME, or a local --judge-model PATH) whether each answer of "
     "the run folders means the same as the reference (rubric binary, temperature 0) or to score DermBench's six axes "
     "(--rubric dermbench). Verdicts with reasons go to judge-*.jsonl beside the predictions, judge_accuracy overall, "
     "per modality and per answer type into results.json/results.md; replies that break the JSON contract twice are "
     "unjudged (counted, never scored); verdicts are cached so a re-run asks nothing twice. --human FILE gives the "
     "agreement and Cohen's kappa with human labels, --verbosity-probe N the judge's length bias."),
    ("probe", ProbeOptions, _guarded(run_probe, _probe_line),
     "the paper's linear probe on mean-pooled projector features",
     "StandardScaler + LogisticRegression, C by 5-fold stratified CV on ROC-AUC; features are cached per "
     "model and image. Train / test from label CSVs or from two splits of a benchmark folder (--data); "
     "--group-by COLUMN adds per-group accuracy, balanced accuracy and AUROC with intervals."),
    ("prepare-metrics", PrepareMetricsOptions, run_prepare_metrics,
     "download WordNet (METEOR) and the BERTScore model where scoring finds them offline",
     "On a machine with internet: put NLTK's WordNet and the BERTScore model (bert-base-uncased) into DIR "
     "(--to; default $SKINVL_METRICS_HOME or ~/.cache/skinvl/metrics) and check that both load offline. "
     "Scoring looks there first; copy DIR to machines without internet."),
    ("lmms-task", LmmsTaskOptions, run_lmms_task,
     "write an lmms-eval task folder running mmskin_vqa on your dataset; prints its path",
     "Writes DIR/mmskin_vqa.yaml (an include of the shipped task plus dataset_path) for lmms-eval's "
     "--include_path: lmms-eval ... --tasks mmskin_vqa --include_path \"$(skinvl eval lmms-task --data mm-skin)\". "
     "Metrics are on the 0-1 scale of skinvl eval's results.json."),
)


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add ``skinvl eval`` with the sub-commands vqa, score, zeroshot, compare, probe, prepare-metrics and lmms-task."""
    parser = subparsers.add_parser(
        "eval", help="evaluate any VLM: VQA (paper + standard metrics), zero-shot and linear-probe classification",
        description="Evaluate SkinVL, any local vision-language model or a served one with the MM-Skin "
        "paper's protocol and a sound one beside it. Every command writes results.json, results.md, "
        "predictions and a PNG.", epilog=EXIT_CODES_HELP,
    )
    sub = parser.add_subparsers(dest="eval_command", metavar="EVAL_COMMAND", required=True,
                                parser_class=OptionsParser)
    for name, options, run, help_text, description in COMMANDS:
        if name != "lmms-task":  # writes a YAML file: needs no metric library
            run = _with_eval_extra(run, f"skinvl eval {name}")
        add_command(sub, name, options, run, help_text, description)


def _with_eval_extra(run: Callable[[Any], int], command: str) -> Callable[[Any], int]:
    """``run``, refusing at start (exit 2, the install command) when the eval extra is missing."""
    from skinvl.extras import extra_problem

    def checked(options: Any) -> int:
        problem = extra_problem("eval", command)
        if problem:
            print_problem(problem)
            return ExitCode.BAD_INPUT
        return run(options)

    return checked


__all__ = ["COMMANDS", "register_cli"]
