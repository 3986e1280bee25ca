"""A classification split of a benchmark folder or Hub dataset (``mm-skin benchmark build``),
as the label CSVs' :class:`~skinvl.evaluation.labels.LabelFile` plus its images and columns.

``load_dataset(DATA, CONFIG, split=SPLIT)`` must have ``image`` and ``label`` (ClassLabel; its
names are the classes, in order); ``image_id`` names each row (else ``row-N``); every other
column (``skin_type``, ``sex``, ...) can be grouped by.

>>> split = load_classification_split("ddi-hub", None, "test")  # doctest: +SKIP
>>> split.labels.classes, split.column("skin_type")[:2]  # doctest: +SKIP
(['benign', 'malignant'], ['I-II', 'V-VI'])
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skinvl.evaluation.labels import LabeledImage, LabelFile, LabelFileError
from skinvl.inference.images import LazyImages


@dataclass
class ClassificationSplit:
    """Labels (rows named by image id), the images (original bytes, lazily) and the dataset."""

    name: str  # "DATA[:CONFIG]/SPLIT" for messages and results
    labels: LabelFile
    images: LazyImages
    dataset: Any  # the datasets.Dataset (images left undecoded by LazyImages)

    def column(self, name: str) -> list[Any]:
        """The values of column ``name`` (ClassLabel ints as names); a one-line error if absent."""
        if name not in self.dataset.column_names:
            raise LabelFileError(f"{self.name}: no column {name!r} to group by; columns: "
                                 f"{', '.join(self.dataset.column_names)}")
        feature = self.dataset.features[name]
        values = self.dataset[name]
        if hasattr(feature, "int2str"):
            return [feature.int2str(v) if v is not None and v >= 0 else None for v in values]  # -1: no label
        return values


def load_classification_split(data: str, config: str | None, split: str, limit: int | None = None,
                              classes: list[str] | None = None) -> ClassificationSplit:
    """``datasets.load_dataset(data, config, split=split)`` as a :class:`ClassificationSplit`."""
    import datasets

    name = f"{data}{':' + config if config else ''}/{split}"
    try:
        ds = datasets.load_dataset(data, config, split=split)
    except (ValueError, FileNotFoundError, datasets.exceptions.DatasetNotFoundError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise LabelFileError(f"--data {name}: cannot load it ({first[:300]}); give a folder built by "
                             "`mm-skin benchmark build` or its Hub id, and an existing --config / --split") from None
    feature = ds.features.get("label")
    if "image" not in ds.column_names or not isinstance(feature, datasets.ClassLabel):
        raise LabelFileError(f"--data {name}: needs an 'image' column and a 'label' ClassLabel column; found "
                             f"{ds.column_names}. Build it with `mm-skin benchmark build`.")
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    names = list(feature.names)
    if classes and classes != names:
        raise LabelFileError(f"--data {name}: --classes {classes} differs from the dataset's classes {names}; "
                             "drop --classes (the dataset's ClassLabel order is used)")
    ids = ds["image_id"] if "image_id" in ds.column_names else [f"row-{i + 1}" for i in range(len(ds))]
    unlabelled = next((i for i, label in enumerate(ds["label"]) if label is None or label < 0), None)
    if unlabelled is not None:  # ClassLabel allows -1 ("no label"); names[-1] would be the last class
        raise LabelFileError(f"--data {name}: row {unlabelled + 1} ({ids[unlabelled]}) has no label (-1); "
                             "drop unlabelled rows from the split you evaluate on")
    rows = [LabeledImage(image=str(image_id), label=names[label], row=i + 1)
            for i, (image_id, label) in enumerate(zip(ids, ds["label"], strict=True))]
    if not rows:
        raise LabelFileError(f"--data {name}: the split has no rows")
    labels = LabelFile(path=Path(name), rows=rows, classes=names)
    root = data if Path(data).is_dir() else None
    return ClassificationSplit(name, labels, LazyImages.from_dataset(ds, root=root), ds)
