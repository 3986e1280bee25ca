"""Open-ended VQA evaluation: batched generation over the MM-Skin test split, then scoring.

``skinvl eval vqa`` = :func:`generate_predictions` (writes ``predictions.csv`` in the format of
:mod:`skinvl.evaluation.predictions`) + :func:`score_to_folder`, which is also all that
``skinvl eval score`` does with a file from any other model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from skinvl.evaluation import report
from skinvl.evaluation.predictions import VQASample, read_predictions, write_predictions
from skinvl.evaluation.scoring import ScoreResult, ScoreSettings, score_vqa

# The authors' evaluation decoding (DESIGN.md 1.3): sampled beam search, not deterministic;
# we seed it so a run can be repeated on the same hardware.
PAPER_DECODING: dict[str, Any] = {
    "do_sample": True,
    "temperature": 0.2,
    "top_p": 0.9,
    "num_beams": 5,
    "min_new_tokens": 20,
    "max_new_tokens": 256,
}
GREEDY_DECODING: dict[str, Any] = {"do_sample": False, "num_beams": 1, "max_new_tokens": 256}
DECODINGS = {"greedy": GREEDY_DECODING, "paper": PAPER_DECODING}
PAPER_FIGURE_METRICS = ("bleu_1", "bleu_4", "rouge_l", "meteor", "bertscore_f1", "token_recall")
STANDARD_FIGURE_METRICS = ("sacrebleu", "rouge_l", "meteor", "bertscore_f1", "yes_no_accuracy")


def decoding_kwargs(decoding: str, max_new_tokens: int | None = None) -> dict[str, Any]:
    """``generate`` keyword arguments of a named decoding ("greedy" or "paper")."""
    if decoding not in DECODINGS:
        raise ValueError(f"unknown decoding {decoding!r}; choose from {sorted(DECODINGS)}")
    kwargs = dict(DECODINGS[decoding])
    if max_new_tokens is not None:
        kwargs["max_new_tokens"] = max_new_tokens
        if kwargs.get("min_new_tokens", 0) > max_new_tokens:
            kwargs["min_new_tokens"] = max_new_tokens
    return kwargs


def answer_questions(
    model,
    processor,
    images: Sequence,
    questions: Sequence[str],
    *,
    batch_size: int = 8,
    template: str | None = None,
    decoding: str = "greedy",
    max_new_tokens: int | None = None,
    seed: int = 0,
    description: str = "generating",
) -> list[str]:
    """Answer ``questions`` about ``images`` in batches of ``batch_size``, with a progress bar.

    Uses ``skinvl.generate.answer_batch`` (left padding, the processor's chat template).
    """
    from tqdm.auto import tqdm
    from transformers import set_seed

    from skinvl.generate import answer_batch

    if len(images) != len(questions):
        raise ValueError(f"{len(images)} images but {len(questions)} questions")
    kwargs = decoding_kwargs(decoding, max_new_tokens)
    set_seed(seed)
    answers: list[str] = []
    with tqdm(total=len(questions), desc=description, unit="question") as bar:
        for start in range(0, len(questions), batch_size):
            chunk_images = [im.convert("RGB") for im in images[start : start + batch_size]]
            chunk_questions = list(questions[start : start + batch_size])
            answers.extend(
                answer_batch(
                    model,
                    processor,
                    chunk_images,
                    chunk_questions,
                    template=template,
                    batch_size=batch_size,
                    **kwargs,
                )
            )
            bar.update(len(chunk_questions))
    return answers


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


def generate_predictions(
    model,
    processor,
    ds,
    *,
    batch_size: int = 8,
    template: str | None = None,
    decoding: str = "greedy",
    max_new_tokens: int | None = None,
    seed: int = 0,
) -> list[VQASample]:
    """Answer every question of a VQA split; returns samples ready for :func:`score_vqa`."""
    questions = list(ds["question"])
    references = list(ds["answer"])
    modalities = _modality_names(ds)
    ids = [str(v) for v in ds["image_id"]] if "image_id" in ds.column_names else [str(i) for i in range(len(ds))]
    images = _LazyImages(ds)
    answers = answer_questions(
        model,
        processor,
        images,
        questions,
        batch_size=batch_size,
        template=template,
        decoding=decoding,
        max_new_tokens=max_new_tokens,
        seed=seed,
        description="eval vqa",
    )
    return [
        VQASample(question=q, answer=a, prediction=p, modality=m, image_id=i)
        for q, a, p, m, i in zip(questions, references, answers, modalities, ids, strict=True)
    ]


class _LazyImages:
    """Slice-able view of a dataset's image column that decodes only the requested rows."""

    def __init__(self, ds):
        self._ds = ds

    def __len__(self) -> int:
        return len(self._ds)

    def __getitem__(self, item):
        return self._ds[item]["image"]


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
        "unavailable": result.unavailable,
        "settings": {
            "bertscore_model": settings.bertscore_model if settings.bertscore else None,
            "bertscore_layer": settings.bertscore_layer,
        },
        "files": {
            "predictions": "predictions.csv",
            "markdown": "results.md",
            "figure": "vqa_scores.png",
        },
    }
    report.write_results_json(out, payload)
    title = f"VQA: {meta.get('model') or Path(meta.get('predictions_file') or 'predictions').name}"
    sections = [f"# {title}", "", f"{result.n_samples} questions, {result.empty_predictions} blank predictions."]
    for p in protocols:
        columns = [c for c in next(iter(result.metrics[p].values())) if c != "n"]
        sections += ["", f"## Protocol `{p}` (x100)", "", report.markdown_table(result.metrics[p], ["n", *columns], "group")]
    sections.append(report.unavailable_notes(result.unavailable))
    report.write_markdown(out, "\n".join(sections))
    main = "paper" if "paper" in protocols else protocols[0]
    report.plot_vqa(
        out,
        result.metrics[main],
        PAPER_FIGURE_METRICS if main == "paper" else STANDARD_FIGURE_METRICS,
        f"{title} ({main} protocol)",
        note="not shown (unavailable): " + ", ".join(result.unavailable) if result.unavailable else "",
    )
    return payload


def _write_scored_samples(samples: Sequence[VQASample], result: ScoreResult, path: Path) -> None:
    import csv

    extra = list(result.per_sample)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["image_id", "modality", "question", "answer", "prediction", *extra])
        for i, s in enumerate(samples):
            values = [result.per_sample[k][i] for k in extra]
            writer.writerow(
                [s.image_id or "", s.modality or "", s.question, s.answer, s.prediction,
                 *("" if v is None else f"{v:.6f}" for v in values)]
            )


def run_score(
    predictions_file: str | Path,
    out_dir: str | Path,
    *,
    protocols: Sequence[str] = ("paper", "standard"),
    settings: ScoreSettings | None = None,
) -> dict[str, Any]:
    """``skinvl eval score``: read a predictions file from any model and score it."""
    samples = read_predictions(predictions_file)
    return score_to_folder(
        samples, out_dir, protocols=protocols, settings=settings,
        meta={"model": None, "dataset": None, "split": None, "predictions_file": str(predictions_file)},
    )


def run_vqa(
    model_name: str,
    data: str,
    out_dir: str | Path,
    *,
    config: str = "vqa",
    split: str = "test",
    batch_size: int = 8,
    decoding: str = "greedy",
    max_new_tokens: int | None = None,
    limit: int | None = None,
    template: str | None = None,
    seed: int = 0,
    protocols: Sequence[str] = ("paper", "standard"),
    settings: ScoreSettings | None = None,
    dtype: str | None = None,
    device_map: str | None = None,
    model_and_processor: tuple | None = None,
) -> dict[str, Any]:
    """``skinvl eval vqa``: generate answers for a VQA split, write predictions and scores."""
    ds = load_vqa_split(data, config, split, limit)
    if model_and_processor is None:
        import skinvl

        model_and_processor = skinvl.load(model_name, dtype=dtype, device_map=device_map, template=template)
    model, processor = model_and_processor
    samples = generate_predictions(
        model, processor, ds, batch_size=batch_size, template=template, decoding=decoding,
        max_new_tokens=max_new_tokens, seed=seed,
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # The plain predictions file first: usable with `skinvl eval score` even if scoring fails.
    write_predictions(samples, out / "predictions_raw.csv")
    return score_to_folder(
        samples, out, protocols=protocols, settings=settings,
        meta={
            "model": model_name, "dataset": data, "config": config, "split": split,
            "decoding": {"name": decoding, **decoding_kwargs(decoding, max_new_tokens), "seed": seed},
            "template": template, "limit": limit,
        },
    )
