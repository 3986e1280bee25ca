"""The paper's linear probe ("SFT" classification): frozen image features + logistic regression.

Features: the multimodal projector's output for each image (``model.get_image_features``: vision
tower -> feature layer -> projector, one vector per patch token), mean-pooled over the patch
tokens. Extracted in batches under ``torch.inference_mode`` and cached on disk, one ``.npy`` per
image under ``<cache>/<model key>/``: the model key hashes the config, the image processor's
settings and the vision tower + projector weights; the image key hashes the file's bytes. A
second run with the same model and images therefore loads every vector from the cache. Each
file is written to a temporary name and renamed into place, so a killed run leaves no truncated
vector; a cache file that still does not load as a float vector (truncated or corrupted by other
means) is recomputed and replaced, counted in ``feature_cache`` (``replaced``) and named in a
warning.

Classifier (as the paper): ``StandardScaler`` + ``LogisticRegression``, C chosen from
``10 ** linspace(-5, 1, 10)`` by 5-fold stratified cross-validation (sklearn's default
``StratifiedKFold(5)``, no shuffling) on ROC-AUC (one-vs-rest for more than two classes), refit
on the whole training set. Test metrics: accuracy, macro F1, balanced accuracy, AUROC (binary,
or macro one-vs-rest) and expected calibration error (15 equal-width bins on the top-class
probability).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from skinvl.evaluation.benchmark_data import load_classification_split
from skinvl.evaluation.classification import classification_metrics, write_classification_outputs
from skinvl.evaluation.groups import group_metrics
from skinvl.evaluation.labels import (
    LabeledImage,
    LabelFile,
    LabelFileError,
    read_label_csv,
    resolve_images,
)
from skinvl.inference.images import LazyImages
from skinvl.inference.loading import LoadedModel, load_model
from skinvl.inference.options import MODEL_HELP, ModelError, ModelOptions

C_GRID = 10 ** np.linspace(-5, 1, 10)
CV_FOLDS = 5
ECE_BINS = 15


def default_cache_dir() -> Path:
    """``$SKINVL_CACHE`` or ``$XDG_CACHE_HOME/skinvl`` (``~/.cache/skinvl``), + ``probe-features``."""
    from skinvl.evaluation.metric_resources import skinvl_cache_home

    return skinvl_cache_home() / "probe-features"


def model_key(model, processor) -> str:
    """Identity of everything that determines a feature vector: config, preprocessing, weights."""
    import torch

    h = hashlib.blake2b(digest_size=16)
    h.update(model.config.to_json_string(use_diff=False).encode())
    image_processor = getattr(processor, "image_processor", processor)
    h.update(json.dumps(image_processor.to_dict(), sort_keys=True, default=str).encode())
    inner = getattr(model, "model", model)
    parts = ("vision_tower", "multi_modal_projector")
    if not all(hasattr(inner, part) for part in parts) or not hasattr(model, "get_image_features"):
        raise ModelError(f"the linear probe reads projector features: it needs a LLaVA-style model (SkinVL, LLaVA) "
                         f"with {' and '.join(parts)}; {type(model).__name__} has another layout.")
    for part in parts:
        module = getattr(inner, part)
        for name, tensor in sorted(module.state_dict().items()):
            h.update(name.encode())
            t = tensor.detach().to("cpu")
            if t.dtype == torch.bfloat16:  # numpy has no bfloat16: hash the raw 16-bit words
                t = t.view(torch.int16)
            h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


def file_key(path: str | Path) -> str:
    """Identity of an image file: the hash of its bytes (a renamed copy hits the same entry)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def bytes_key(data: bytes) -> str:
    """:func:`file_key` of bytes already in memory (the same key as the file holding them)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _load_cached(folder: Path, keys: Sequence[str]) -> tuple[dict[str, np.ndarray], list[str]]:
    """Cached vectors by key, and the cache files that exist but are not a 1-D float vector."""
    vectors: dict[str, np.ndarray] = {}
    bad: list[str] = []
    for k in dict.fromkeys(keys):
        f = folder / f"{k}.npy"
        if not f.is_file():
            continue
        try:
            v = np.load(f, allow_pickle=False)
        except (OSError, ValueError, EOFError):  # truncated, not .npy, or a pickle: recompute it
            bad.append(str(f))
            continue
        if v.ndim == 1 and v.size and np.issubdtype(v.dtype, np.floating):
            vectors[k] = v
        else:
            bad.append(str(f))
    return vectors, bad


def _save_atomic(path: Path, vector: np.ndarray) -> None:
    """np.save to a temporary file in the same folder, then rename: readers never see half a file."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, vector)
        os.replace(name, path)
    except BaseException:  # also KeyboardInterrupt: leave no temporary file behind
        Path(name).unlink(missing_ok=True)
        raise


def _pool(model, pixel_values):
    import torch

    out = model.get_image_features(pixel_values=pixel_values)
    feats = getattr(out, "pooler_output", out)
    if isinstance(feats, (list, tuple)):
        feats = torch.stack(list(feats))
    return feats.mean(dim=1)  # mean over patch tokens -> (batch, hidden)


def extract_features(
    model,
    processor,
    image_paths: Sequence[str | Path] | LazyImages,
    *,
    batch_size: int = 16,
    cache_dir: str | Path | None = None,
    description: str = "features",
) -> tuple[np.ndarray, dict[str, int]]:
    """Mean-pooled projector features of ``image_paths`` (files, or a :class:`LazyImages` of a
    dataset's original bytes; float32, one row per image), cached by the bytes' hash.

    Returns the features and ``{"cached": n, "computed": m}`` (+ ``"replaced"``: the unreadable cache
    files that were recomputed, when there were any).
    """
    import torch
    from tqdm.auto import tqdm

    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder = cache / model_key(model, processor)
    folder.mkdir(parents=True, exist_ok=True)
    images = image_paths if isinstance(image_paths, LazyImages) else LazyImages.from_files(image_paths)
    keys = ([file_key(p) for p in image_paths] if not isinstance(image_paths, LazyImages)
            else [bytes_key(images.raw(i)) for i in range(len(images))])
    vectors, bad = _load_cached(folder, keys)
    todo_keys = list(dict.fromkeys(k for k in keys if k not in vectors))
    first_index = {k: i for i, k in reversed(list(enumerate(keys)))}
    todo_images = images.take([first_index[k] for k in todo_keys])
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    image_processor = getattr(processor, "image_processor", processor)
    with torch.inference_mode(), tqdm(total=len(todo_keys), desc=description, unit="image") as bar:
        for start in range(0, len(todo_keys), batch_size):
            batch = todo_keys[start : start + batch_size]
            images = todo_images[start : start + batch_size]
            pixel_values = image_processor(images, return_tensors="pt")["pixel_values"].to(device, dtype)
            pooled = _pool(model, pixel_values).float().cpu().numpy()
            for k, v in zip(batch, pooled, strict=True):
                vectors[k] = v
                _save_atomic(folder / f"{k}.npy", v)
            bar.update(len(batch))
    features = np.stack([vectors[k] for k in keys]).astype(np.float32)
    stats: dict[str, Any] = {"cached": len(set(keys)) - len(todo_keys), "computed": len(todo_keys)}
    return features, {**stats, "replaced": bad} if bad else stats


def expected_calibration_error(proba: np.ndarray, y_true: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Top-label ECE: sum over equal-width confidence bins of |accuracy - confidence| x bin share."""
    confidence = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == y_true).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        in_bin = (confidence > lo) & (confidence <= hi) if lo > 0 else (confidence >= lo) & (confidence <= hi)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def fit_probe(
    train_x: np.ndarray, train_y: Sequence[str], test_x: np.ndarray, test_y: Sequence[str], classes: Sequence[str]
) -> dict[str, Any]:
    """Fit the paper's probe on train features and evaluate on test features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    index = {c: i for i, c in enumerate(classes)}
    ytr = np.array([index[y] for y in train_y])
    yte = np.array([index[y] for y in test_y])
    counts = np.bincount(ytr, minlength=len(classes))
    if (counts == 0).any() or counts.min() < CV_FOLDS:
        bad = {c: int(n) for c, n in zip(classes, counts, strict=True) if n < CV_FOLDS}
        raise ValueError(
            f"the training labels need at least {CV_FOLDS} images per class for {CV_FOLDS}-fold "
            f"stratified CV; these classes have fewer: {bad}."
        )
    scoring = "roc_auc" if len(classes) == 2 else "roc_auc_ovr"
    search = GridSearchCV(
        Pipeline([("scaler", StandardScaler()), ("clf", LogisticRegression(max_iter=1000))]),
        {"clf__C": C_GRID},
        cv=StratifiedKFold(n_splits=CV_FOLDS),
        scoring=scoring,
        refit=True,
    )
    search.fit(train_x, ytr)
    proba = search.predict_proba(test_x)
    pred = proba.argmax(axis=1)
    result = classification_metrics([classes[i] for i in yte], [classes[i] for i in pred], classes)
    unavailable: dict[str, dict[str, str]] = {}
    try:
        if len(classes) == 2:
            auroc = float(roc_auc_score(yte, proba[:, 1]))
        else:
            auroc = float(roc_auc_score(yte, proba, multi_class="ovr", average="macro", labels=list(range(len(classes)))))
    except ValueError as e:
        auroc = None
        unavailable["auroc"] = {"reason": f"AUROC is undefined on this test set: {e}", "fix": "test on a set with every class present"}
    metrics = result["metrics"]
    metrics.pop("unparseable", None)  # a probe always predicts a class
    metrics["auroc"] = auroc
    metrics["ece"] = expected_calibration_error(proba, yte)
    result["best_C"] = float(search.best_params_["clf__C"])
    result["cv_auroc"] = float(search.best_score_)
    result["unavailable"] = unavailable
    result["confusion_matrix"]["columns"] = list(classes)
    result["confusion_matrix"]["counts"] = [row[: len(classes)] for row in result["confusion_matrix"]["counts"]]
    result["predictions"] = [classes[i] for i in pred]
    result["proba"] = proba
    return result


@dataclass(kw_only=True)
class ProbeOptions(ModelOptions):
    """``skinvl eval probe``: a local model, train and test label CSVs, their images, the cache."""

    model: str = field(metadata=MODEL_HELP)  # required here: no endpoint alternative

    train_labels: str | None = field(default=None, metadata={"help": "label CSV of the training images (or --data)"})
    test_labels: str | None = field(default=None, metadata={"help": "label CSV of the test images (or --data)"})
    images: str | None = field(default=None, metadata={"help": "folder the CSVs' image paths are relative to"})
    data: str | None = field(default=None, metadata={
        "help": "instead of the CSVs: a folder built by `mm-skin benchmark build` or its Hub id"})
    config: str | None = field(default=None, metadata={"help": "with --data: the label set (config)"})
    train_split: str = field(default="train", metadata={"help": "with --data: the split the probe is fitted on"})
    split: str = field(default="test", metadata={"help": "with --data: the split it is tested on"})
    group_by: str | None = field(default=None, metadata={
        "metavar": "COLUMN", "help": "with --data: metrics (with AUROC) per value of COLUMN, image-resampled "
                                     "intervals and the worst-best gap"})
    out: str = field(metadata={"help": "output folder (results.json, results.md, predictions.csv, PNG)"})
    batch_size: int = field(default=16, metadata={"help": "images per forward pass"})
    cache_dir: str | None = field(default=None, metadata={"help": "feature cache (default ~/.cache/skinvl/probe-features)"})
    limit: int | None = field(default=None, metadata={"help": "use only the first N rows of each CSV"})
    name: str | None = field(default=None, metadata={"help": "label of the run in tables and cards (default: the model)"})


def _cache_warnings(*stats: dict[str, Any]) -> list[str]:
    replaced = [f for s in stats for f in s.get("replaced", [])]
    if not replaced:
        return []
    return [f"{len(replaced)} unreadable feature cache file(s) (first: {replaced[0]}) were recomputed and replaced; "
            "nothing to do (delete the cache folder to rebuild it all)."]


@dataclass
class _ProbeSide:
    """One side (train or test) of a probe: its labels, the rows used and their images."""

    labels: LabelFile
    rows: list[LabeledImage]
    images: Sequence[Path] | LazyImages
    name: str
    groups: list[Any] | None = None


def _probe_sides(options: ProbeOptions) -> tuple[_ProbeSide, _ProbeSide]:
    """Train and test from the label CSVs or from ``--data`` (two splits of one config)."""
    if bool(options.data) == bool(options.train_labels or options.test_labels):
        raise LabelFileError("give either --data (a benchmark folder or Hub id) or --train-labels and --test-labels "
                             "with --images, not both and not neither.")
    if options.data:
        train = load_classification_split(options.data, options.config, options.train_split, options.limit)
        test = load_classification_split(options.data, options.config, options.split, options.limit)
        groups = test.column(options.group_by) if options.group_by else None
        return (_ProbeSide(train.labels, train.labels.rows, train.images, train.name),
                _ProbeSide(test.labels, test.labels.rows, test.images, test.name, groups))
    if not (options.train_labels and options.test_labels and options.images):
        raise LabelFileError("--train-labels, --test-labels and --images go together: pass all three (or --data).")
    if options.group_by:
        raise LabelFileError("--group-by needs --data (a label CSV has no group columns).")
    train = read_label_csv(options.train_labels)
    test = read_label_csv(options.test_labels, classes=train.classes)
    sides = []
    for labels, name in ((train, options.train_labels), (test, options.test_labels)):
        pairs = resolve_images(labels, options.images, options.limit)
        sides.append(_ProbeSide(labels, [r for r, _ in pairs], [p for _, p in pairs], str(name)))
    return sides[0], sides[1]


def run_probe(options: ProbeOptions, *, loaded: LoadedModel | None = None) -> dict[str, Any]:
    """``skinvl eval probe``: features for train and test images, fit, evaluate, write outputs."""
    limit, batch_size, cache_dir = options.limit, options.batch_size, options.cache_dir
    train_side, test_side = _probe_sides(options)
    train, test = train_side.labels, test_side.labels
    train_labels, test_labels = train_side.name, test_side.name
    loaded = loaded or load_model(options)
    model, processor = loaded.model, loaded.processor
    train_x, train_cache = extract_features(
        model, processor, train_side.images, batch_size=batch_size, cache_dir=cache_dir, description="train features"
    )
    test_x, test_cache = extract_features(
        model, processor, test_side.images, batch_size=batch_size, cache_dir=cache_dir, description="test features"
    )
    if test.classes != train.classes:
        raise LabelFileError(f"{test_labels}: classes {test.classes} differ from {train_labels}'s {train.classes}.")
    result = fit_probe(train_x, [r.label for r in train_side.rows], test_x, [r.label for r in test_side.rows],
                       train.classes)
    payload = {
        "task": "linear-probe-classification",
        "model": options.model,
        "name": options.name or options.model,
        "model_info": loaded.info,
        "dataset": str(test_labels),
        "train_dataset": str(train_labels),
        "split": options.split if options.data else "test",
        "protocol": "paper",
        "classes": train.classes,
        "metrics": result["metrics"],
        "per_class": result["per_class"],
        "confusion_matrix": result["confusion_matrix"],
        "best_C": result["best_C"],
        "cv_auroc": result["cv_auroc"],
        "feature_cache": {"train": train_cache, "test": test_cache, "dim": int(train_x.shape[1])},
        "labels": {"train": train.summary(), "test": test.summary()},
        "warnings": train.warnings() + test.warnings() + _cache_warnings(train_cache, test_cache),
        "limit": limit,
        "unavailable": result["unavailable"],
        "files": {"predictions": "predictions.csv", "markdown": "results.md", "figure": "confusion_matrix.png"},
    }
    if test_side.groups is not None:
        payload["groups"] = group_metrics([r.label for r in test_side.rows], result["predictions"], train.classes,
                                          test_side.groups, [r.image for r in test_side.rows], result["proba"],
                                          column=options.group_by)
    rows = [
        {
            "row": r.row, "image": r.image, "label": r.label, "prediction": pred,
            "confidence": f"{float(p.max()):.6f}", "correct": pred == r.label,
            **({options.group_by: test_side.groups[k]} if test_side.groups is not None else {}),
        }
        for k, (r, pred, p) in enumerate(zip(test_side.rows, result["predictions"], result["proba"], strict=True))
    ]
    write_classification_outputs(Path(options.out), payload, rows, f"Linear probe: {options.name or Path(test_labels).stem}")
    return payload
