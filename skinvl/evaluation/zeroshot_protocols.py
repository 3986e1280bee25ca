"""Zero-shot protocols beside the paper's free-text parse: ``mcq`` and ``likelihood``.

- ``mcq``: the classes as lettered options ("A. Melanoma"), asked in :data:`MCQ_PERMUTATIONS`
  orders per image (cyclic rotations spread over the positions, so position bias shows and
  averages out); the answer's letter is parsed (:func:`parse_letter`); an answer with no option
  letter is unparseable. The image's prediction is the majority over its orders (ties: the first
  order's). Reported: accuracy per order, the share of images whose orders all agree, and the
  unparseable rate over every (image, order) answer.
- ``likelihood`` (local models): each class name is scored as the assistant's answer to the
  paper's question: its log-likelihood under the model after the prompt (the image included).
  Prediction: the highest total log-likelihood; class probabilities: softmax of the totals, i.e.
  the model's distribution renormalised over the closed set of classes (no length normalisation:
  the total is the probability of the whole name). Accuracy with the per-token mean instead (length
  normalised) is reported beside it. Probabilities give AUROC, log loss and expected calibration
  error. A served model's chat API returns log-probabilities of generated tokens only, never of a
  given continuation, so ``likelihood`` with ``--endpoint`` runs ``mcq`` and says so.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from skinvl.evaluation.runs import Row

MCQ_PERMUTATIONS = 4
MCQ_PROMPT = "This is a skin lesion image. Which one is the diagnosis?\n{options}\nAnswer with the option's letter."
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def orders(n: int, k: int = MCQ_PERMUTATIONS) -> list[list[int]]:
    """``min(k, n)`` option orders: rotations of ``range(n)`` by evenly spread offsets."""
    k = max(1, min(k, n))
    return [[(i + round(j * n / k)) % n for i in range(n)] for j in range(k)]


def mcq_question(classes: Sequence[str], order: Sequence[int]) -> str:
    """The lettered question for one order of the classes."""
    if len(classes) > len(LETTERS):
        raise ValueError(f"mcq supports up to {len(LETTERS)} classes, got {len(classes)}; use likelihood")
    options = "\n".join(f"{LETTERS[i]}. {classes[c]}" for i, c in enumerate(order))
    return MCQ_PROMPT.format(options=options)


# "B", "B.", "(B)", "B) Nevus" at the start (not "A melanoma": an article), or "answer is B", "option (b)"
_LEADING = re.compile(r"^\s*\(?([A-Z])(?:[.):,]|\s*$)")
_NAMED = re.compile(r"\b(?:answer|option)(?:\s+is)?\s*:?\s*\(?([A-Za-z])\b(?![a-z])", re.IGNORECASE)


def parse_letter(answer: str, n: int) -> int | None:
    """The option index an answer names, or None.

    >>> [parse_letter(a, 3) for a in ("B", "(C) nevus", "The answer is b.", "A melanoma", "D.")]
    [1, 2, 1, None, None]
    """
    for pattern in (_LEADING, _NAMED):
        match = pattern.search(answer)
        if match:
            index = LETTERS.index(match.group(1).upper())
            return index if index < n else None
    return None


def mcq_rows(rows: Sequence[Row], classes: Sequence[str]) -> list[Row]:
    """One row per (image, order): id ``{image id}#mcq{j}``, the order in the record."""
    out = []
    for row in rows:
        for j, order in enumerate(orders(len(classes))):
            out.append(Row(f"{row.id}#mcq{j}", row.index, mcq_question(classes, order),
                           {**row.fields, "image_row_id": row.id, "order": j, "options": [classes[c] for c in order]}))
    return out


def score_mcq(done: Sequence[dict[str, Any]], classes: Sequence[str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per-image records (majority prediction) and the mcq statistics, from the answered records."""
    by_image: dict[str, list[dict[str, Any]]] = {}
    for record in done:
        by_image.setdefault(record["image_row_id"], []).append(record)
    k = len(orders(len(classes)))
    per_order = np.zeros(k)
    per_order_n = np.zeros(k)
    unparseable = agree = 0
    images = []
    for image_id, records in by_image.items():
        picks = []
        for record in sorted(records, key=lambda r: r["order"]):
            index = parse_letter(record["prediction"], len(record["options"]))
            pick = None if index is None else record["options"][index]
            unparseable += pick is None
            per_order[record["order"]] += pick == record["label"]
            per_order_n[record["order"]] += 1
            picks.append(pick)
        votes = Counter(p for p in picks if p is not None)
        top = max(votes.values(), default=0)
        prediction = next((p for p in picks if p is not None and votes[p] == top), None)
        agree += len(set(picks)) == 1 and picks[0] is not None
        images.append({**records[0], "id": image_id, "prediction": prediction, "answers": [r["prediction"] for r in records]})
    stats = {"orders": k, "accuracy_per_order": (per_order / np.maximum(per_order_n, 1)).tolist(),
             "unparseable_rate": unparseable / max(len(done), 1), "consistent_share": agree / max(len(by_image), 1),
             "answers": len(done), "prompt_first_order": mcq_question(classes, orders(len(classes))[0])}
    return images, stats


def class_log_likelihoods(loaded: Any, image: Any, question: str, classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Total log-likelihood of each class name as the answer to ``question`` about ``image``,
    and its number of tokens (one forward pass over the classes as a batch)."""
    import torch

    processor, model = loaded.processor, loaded.model
    tokenizer = getattr(processor, "tokenizer", processor)
    prompt = loaded.prompt(question)
    bos = tokenizer.bos_token
    special = not (bos and prompt.startswith(bos))
    saved = tokenizer.padding_side, tokenizer.pad_token
    tokenizer.padding_side = "right"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    try:
        head = processor(images=[[image]], text=[prompt], return_tensors="pt", add_special_tokens=special)["input_ids"][0]
        inputs = dict(processor(images=[[image]] * len(classes), text=[prompt + c for c in classes], padding=True,
                                return_tensors="pt", add_special_tokens=special))
    finally:
        tokenizer.padding_side, tokenizer.pad_token = saved
    inputs.pop("labels", None)
    dtype = next(model.parameters()).dtype
    inputs = {k: (v.to(model.device, dtype) if v.is_floating_point() else v.to(model.device)) for k, v in inputs.items()}
    with torch.inference_mode():
        logits = model(**inputs).logits.float()
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    logprobs = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None])[..., 0]
    totals, counts = [], []
    for i in range(len(classes)):
        end = int(mask[i].sum())
        start = _common_prefix(head.tolist(), ids[i, :end].tolist())
        totals.append(float(logprobs[i, start - 1 : end - 1].sum()))
        counts.append(max(end - start, 1))
    return np.array(totals), np.array(counts)


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return max(n, 1)


def probability_metrics(truth: Sequence[str], proba: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """AUROC (binary, or macro one-vs-rest over the classes present), log loss and ECE."""
    from sklearn.metrics import log_loss

    from skinvl.evaluation.groups import auroc
    from skinvl.evaluation.probe import expected_calibration_error

    y = np.array([list(classes).index(t) for t in truth])
    value = auroc(y, proba)
    return {"auroc": value if np.isfinite(value) else None, "log_loss": float(log_loss(y, proba, labels=list(range(len(classes))))),
            "ece": expected_calibration_error(proba, y)}


def likelihood_records(loaded: Any, rows: Sequence[Row], images: Any, classes: Sequence[str],
                       question: str) -> tuple[list[dict[str, Any]], np.ndarray, list[str]]:
    """Records (prediction = argmax total), class probabilities, and the length-normalised predictions."""
    from tqdm.auto import tqdm

    records, proba, normalised = [], [], []
    for row in tqdm(rows, desc="eval zeroshot (likelihood)", unit="image"):
        totals, counts = class_log_likelihoods(loaded, images[row.index], question, classes)
        p = np.exp(totals - totals.max())
        proba.append(p / p.sum())
        normalised.append(classes[int(np.argmax(totals / counts))])
        records.append({**row.record(classes[int(np.argmax(totals))]),
                        "log_likelihoods": {c: float(t) for c, t in zip(classes, totals, strict=True)}})
    return records, np.array(proba), normalised


def write_protocol_outputs(out: Path, payload: dict[str, Any], records: Sequence[dict[str, Any]], title: str,
                           group_by: str | None) -> None:
    """predictions.csv (one row per image), results.json/.md and the confusion matrix."""
    from skinvl.evaluation.classification import write_classification_outputs

    rows = [{"id": r["id"], "row": r["row"], "image": r["image"], "label": r["label"],
             "prediction": r["prediction"] or "", "correct": r["prediction"] == r["label"],
             **({group_by: r.get("group")} if group_by else {})} for r in records]
    write_classification_outputs(out, payload, rows, title)
