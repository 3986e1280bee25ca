"""Open-ended VQA evaluation: answers for the MM-Skin test split (any model), then scoring.

``skinvl eval vqa`` = :func:`~skinvl.evaluation.ask.ask` (a logged, resumable run of a local
model or an endpoint, written to ``predictions.jsonl``) + :func:`score_to_folder`, which is also
all that ``skinvl eval score`` does with a file from any other model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mm_skin.csv_files import write_rows
from skinvl.evaluation import report
from skinvl.evaluation.ask import AskOptions, ask
from skinvl.evaluation.foreign import (
    AnswerFile,
    coverage_of,
    detect_format,
    match_rows,
    read_answers,
)
from skinvl.evaluation.predictions import (
    PredictionsFileError,
    VQASample,
    read_predictions,
    sample_cells,
    sample_columns,
    write_predictions,
)
from skinvl.evaluation.provenance_header import provenance_header, synthetic_data
from skinvl.evaluation.runs import Row, dataset_info
from skinvl.evaluation.scoring import (
    HEADLINE_METRICS,
    ScoreOptions,
    ScoreResult,
    ScoreSettings,
    score_vqa,
)
from skinvl.inference.batching import LocalAnswerer
from skinvl.inference.decoding import decoding_kwargs
from skinvl.inference.images import LazyImages
from skinvl.inference.loading import LoadedModel


@dataclass(kw_only=True)
class SplitOptions:
    """Which VQA split: ``load_dataset(DATA, CONFIG, split=SPLIT)``."""

    data: str = field(metadata={"help": "dataset folder or Hub id with the MM-Skin 'vqa' config"})
    config: str = field(default="vqa", metadata={"help": "dataset config"})
    split: str = field(default="test", metadata={"help": "split"})


@dataclass(kw_only=True)
class VQAOptions(AskOptions, ScoreOptions, SplitOptions):
    """``skinvl eval vqa``: a model (local or served), a VQA split, decoding, run folder, scoring."""


@dataclass(kw_only=True)
class CoverageOptions(SplitOptions):
    """Answers made elsewhere: the split they answer (optional), and whether a subset may be scored."""

    data: str | None = field(default=None, metadata={
        "help": "dataset folder or Hub id the answers were made on: modality, reference (and answer type) come from it, and "
        "coverage is checked by row id (recommended)"})
    allow_partial: bool = field(default=False, metadata={
        "help": "score answers that cover only part of the split (coverage is recorded)"})


@dataclass(kw_only=True)
class ScoreFileOptions(ScoreOptions, CoverageOptions):
    """``skinvl eval score``: score a predictions file from any model or harness."""

    predictions: str = field(metadata={
        "help": "predictions file: .csv/.jsonl (ours, e.g. a run's predictions.jsonl), an lmms-eval sample log "
        "(*_samples_*.jsonl) or a VLMEvalKit result (.xlsx/.tsv)"})
    out: str = field(metadata={"help": "output folder"})
    name: str | None = field(default=None, metadata={"help": "label of the run in tables and cards (default: the file name)"})


def load_vqa_split(data: str, config: str = "vqa", split: str = "test", limit: int | None = None):
    """``datasets.load_dataset(data, config, split=split)``, checked for the VQA columns."""
    import datasets

    ds = datasets.load_dataset(data, config, split=split)
    missing = [c for c in ("image", "question", "answer") if c not in ds.column_names]
    if missing:
        raise ValueError(
            f"{data} (config {config!r}, split {split!r}) lacks column(s) {missing}; found "
            f"{ds.column_names}. Use the MM-Skin 'vqa' config (image, question, answer, modality)."
        )
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    return ds


def _modality_names(ds) -> list[str | None]:
    if "modality" not in ds.column_names:
        return [None] * len(ds)
    feature = ds.features["modality"]
    values = ds["modality"]
    if hasattr(feature, "int2str"):  # ClassLabel: stored as ints
        return [feature.int2str(v) if v is not None else None for v in values]
    return [str(v) if v is not None else None for v in values]


def vqa_rows(ds, split: str = "test") -> list[Row]:
    """One :class:`Row` per question, carrying reference, modality, image id (and answer type when known).

    The id is the dataset's stable ``question_id`` (it tracks the question's content), or
    ``{split}-{index:05d}`` for data without that column. ``answer_type`` (closed/open) is in the
    row's fields, hence in predictions.jsonl, only when the dataset has that column.
    """
    n = len(ds)
    image_ids = [str(v) for v in ds["image_id"]] if "image_id" in ds.column_names else [None] * n
    ids = [str(v) for v in ds["question_id"]] if "question_id" in ds.column_names else [f"{split}-{i:05d}" for i in range(n)]
    types = [{"answer_type": v} for v in ds["answer_type"]] if "answer_type" in ds.column_names else [{}] * n
    return [
        Row(row_id, i, q, {"image_id": image_id, "modality": modality, "answer": answer, **answer_type})
        for i, (row_id, q, answer, modality, image_id, answer_type) in enumerate(
            zip(ids, ds["question"], ds["answer"], _modality_names(ds), image_ids, types, strict=True))
    ]


def sample_from_record(record: dict[str, Any]) -> VQASample:
    """The scored sample of an answered prediction record."""
    return VQASample(question=record["question"], answer=record["answer"], prediction=record["prediction"],
                     modality=record.get("modality"), image_id=record.get("image_id"), id=record.get("id"),
                     answer_type=record.get("answer_type"))


def generate_predictions(
    model, processor, ds, *, batch_size: int = 8, template: str | None = None, decoding: str = "greedy",
    max_new_tokens: int | None = None, seed: int = 0,
) -> list[VQASample]:
    """Answer every question of a VQA split in memory (no files); samples for :func:`score_vqa`."""
    loaded = LoadedModel.wrap(model, processor)
    loaded.template = template
    answerer = LocalAnswerer(loaded, batch_size=batch_size, generate_kwargs=decoding_kwargs(decoding, max_new_tokens),
                             seed=seed)
    records = [r for batch in answerer.answer(vqa_rows(ds), LazyImages.from_dataset(ds)) for r in batch]
    return [sample_from_record(r) for r in records]


def score_to_folder(
    samples: Sequence[VQASample],
    out_dir: str | Path,
    *,
    protocols: Sequence[str] = ("paper", "standard"),
    settings: ScoreSettings | None = None,
    meta: dict[str, Any] | None = None,
    write_samples: bool = True,
) -> dict[str, Any]:
    """Score samples and write results.json, results.md, predictions.csv and vqa_scores.png."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    settings = settings or ScoreSettings()
    meta = meta or {}
    result: ScoreResult = score_vqa(samples, protocols, settings)
    if write_samples:
        _write_scored_samples(samples, result, out / "predictions.csv")
    payload: dict[str, Any] = {
        "task": "vqa",
        **meta,
        "protocol": "both" if len(protocols) == 2 else protocols[0],
        "n_samples": result.n_samples,
        "empty_predictions": result.empty_predictions,
        "metrics": {p: result.metrics[p]["overall"] for p in protocols},
        "per_modality": {
            p: {g: v for g, v in result.metrics[p].items() if g != "overall"} for p in protocols
        },
        **({"per_answer_type": result.per_answer_type} if result.per_answer_type else {}),
        **({"paper_rouge_fallback": _fallback_summary(samples, result.rouge_fallback)} if "paper" in protocols else {}),
        "unavailable": result.unavailable,
        "settings": {
            "bertscore_model": settings.bertscore_model if settings.bertscore else None,
            "bertscore_layer": settings.bertscore_layer,
        },
        "files": {
            "predictions": "predictions.csv",
            "markdown": "results.md",
            "figure": "vqa_scores.png",
            **({"log": "predictions.jsonl"} if (out / "predictions.jsonl").is_file() else {}),
        },
    }
    report.write_results_json(out, payload)
    title = f"VQA: {meta.get('name') or meta.get('model') or Path(meta.get('predictions_file') or 'predictions').name}"
    title += " (blind: no image)" if meta.get("blind") else ""
    sections = [f"# {title}", "", provenance_header(payload), "",
                f"{result.n_samples} questions, {result.empty_predictions} blank predictions."]
    for p in protocols:
        sections += _group_table(f"## Protocol `{p}` (x100)", result.metrics[p], "group")
    for p, by_type in result.per_answer_type.items():
        sections += _group_table(f"## Protocol `{p}` per answer type (x100)", by_type, "answer type")
    if result.rouge_fallback:
        sections += ["", f"Paper-protocol ROUGE: {len(result.rouge_fallback)} row(s) the `rouge` package cannot score "
                     "(e.g. a long answer without a period) were scored by `rouge-score` without stemming."]
    sections.append(report.unavailable_notes(result.unavailable))
    report.write_markdown(out, "\n".join(sections))
    main = "paper" if "paper" in protocols else protocols[0]
    report.plot_vqa(
        out,
        result.metrics[main],
        HEADLINE_METRICS[main],
        f"{title} ({main} protocol)",
        note="not shown (unavailable): " + ", ".join(result.unavailable) if result.unavailable else "",
    )
    return payload


def _fallback_summary(samples: Sequence[VQASample], rows: Sequence[int], limit: int = 20) -> dict[str, Any]:
    """Count and the first ``limit`` rows (id, else position) the paper's ROUGE scored by the fallback."""
    return {"count": len(rows), "scorer": "rouge-score, no stemming",
            "rows": [samples[i].id or i for i in rows[:limit]]}


def _group_table(heading: str, groups: dict[str, dict[str, Any]], key: str) -> list[str]:
    """Markdown lines of one table: a row per group, ``n`` then every metric."""
    columns = [c for c in next(iter(groups.values())) if c != "n"]
    return ["", heading, "", report.markdown_table(groups, ["n", *columns], key)]


def _write_scored_samples(samples: Sequence[VQASample], result: ScoreResult, path: Path) -> None:
    extra = list(result.per_sample)
    columns = sample_columns(samples)

    def cells(i: int, s: VQASample) -> list[str]:
        values = [result.per_sample[k][i] for k in extra]
        return [*sample_cells(s, columns), *("" if v is None else f"{v:.6f}" for v in values)]

    with path.open("w", newline="", encoding="utf-8") as f:
        write_rows(f, [*columns, *extra], (cells(i, s) for i, s in enumerate(samples)))


def run_score(
    predictions_file: str | Path,
    out_dir: str | Path,
    *,
    protocols: Sequence[str] = ("paper", "standard"),
    settings: ScoreSettings | None = None,
    name: str | None = None,
    split: CoverageOptions | None = None,
) -> dict[str, Any]:
    """``skinvl eval score``: read a predictions file of any model or harness and score it.

    With ``split.data`` the answers are matched to the split's rows by id (reference and modality
    from the dataset; partial coverage refused unless ``split.allow_partial``); without it the file
    must carry question and reference itself, and coverage is recorded as not checked. The answer
    type (closed/open) comes from the file's ``answer_type`` column, else from the dataset (both
    given: they must agree); with neither there is no per answer-type table.
    """
    fmt = detect_format(Path(predictions_file))
    meta: dict[str, Any] = {"name": name or Path(predictions_file).stem, "model": None, "predictions_file": str(predictions_file),
                            "predictions_format": fmt}
    if split is None or split.data is None:
        # Our own format is read once, by read_predictions (it checks the question and reference columns).
        samples = read_predictions(predictions_file) if fmt == "skinvl" else _samples_from_file(read_answers(predictions_file))
        meta.update(dataset=None, split=None, coverage={"checked": False, "fix": "pass --data to check coverage by row id"})
    else:
        answers = read_answers(predictions_file).answers  # before the split: a bad file fails fast
        ds = load_vqa_split(split.data, split.config, split.split)
        pairs, coverage = match_rows(answers, vqa_rows(ds, split.split), allow_partial=split.allow_partial,
                                     source=str(predictions_file))
        samples = [VQASample(question=row.question, answer=row.fields["answer"], prediction=a.prediction,
                             modality=row.fields["modality"], image_id=row.fields["image_id"], id=row.id,
                             answer_type=a.answer_type or row.fields.get("answer_type")) for row, a in pairs]
        dataset = {"data": split.data, "config": split.config, "split": split.split}
        meta.update(dataset=split.data, config=split.config, split=split.split, coverage=coverage,
                    dataset_info=dataset_info(dataset, [row for row, _ in pairs]), synthetic_data=synthetic_data(split.data))
    return score_to_folder(samples, out_dir, protocols=protocols, settings=settings, meta=meta)


def _samples_from_file(file: AnswerFile) -> list[VQASample]:
    """Samples from another harness's file without --data: it must carry question and reference."""
    samples = []
    for a in file.answers:
        if a.question is None or a.answer is None:
            raise PredictionsFileError(f"{a.where}: no question or reference answer in the file; pass --data (the "
                                       "dataset the answers were made on) to take them from the split.")
        row_id = a.id if a.id is not None else (None if a.position is None else str(a.position))
        samples.append(VQASample(a.question, a.answer, a.prediction, a.modality, a.image_id, row_id, a.answer_type))
    return samples


def run_vqa(options: VQAOptions, *, loaded: LoadedModel | None = None) -> dict[str, Any] | None:
    """``skinvl eval vqa``: answer a VQA split (resumable, data-parallel), write predictions and scores.

    Returns the results.json payload on the main process, None on other ranks.
    """
    ds = load_vqa_split(options.data, options.config, options.split, options.limit)
    rows = vqa_rows(ds, options.split)
    root = options.data if Path(options.data).is_dir() else None
    dataset = {"data": options.data, "config": options.config, "split": options.split, "limit": options.limit}
    answers = ask(options, rows, LazyImages.from_dataset(ds, root=root), dataset, loaded=loaded,
                  description="eval vqa")
    if answers is None:
        return None
    samples = [sample_from_record(r) for r in answers.answered()]
    out = Path(options.out)
    # The plain predictions file first: usable with `skinvl eval score` even if scoring fails.
    write_predictions(samples, out / "predictions_raw.csv")
    return score_to_folder(
        samples, out, protocols=options.protocols(), settings=options.settings(),
        meta={"model": options.model or options.model_name, "dataset": options.data, "config": options.config,
              "split": options.split, "template": answers.meta["model_info"].get("template"),
              "limit": options.limit, **answers.meta, "failed": answers.failure_summary(),
              "synthetic_data": synthetic_data(options.data),
              "coverage": coverage_of(rows, (s.id for s in samples))},
    )


__all__ = ["CoverageOptions", "ScoreFileOptions", "SplitOptions", "VQAOptions", "decoding_kwargs", "generate_predictions", "load_vqa_split",
           "run_score", "run_vqa", "sample_from_record", "score_to_folder", "vqa_rows"]
