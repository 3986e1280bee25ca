"""The real official test CSV (../shared): placeholder images for every path it names."""

from __future__ import annotations

import collections
import csv
import io
import re
from pathlib import Path

import datasets
import pytest
from PIL import Image as PILImage

import mm_skin_dataset as mm

pytestmark = pytest.mark.shared


def test_real_test_csv_gives_the_official_test_split(shared_dir: Path, tmp_path: Path) -> None:
    test_csv = shared_dir / "mmskin-release/Dataframe/test/vqa/MM-Skin_test.csv"
    if not test_csv.is_file():
        pytest.skip(f"{test_csv} is absent")
    with open(test_csv, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    images = sorted({r["image"] for r in rows})
    per_textbook = collections.Counter(int(re.match(r"dataset/bk(\d+)_", r["image"]).group(1)) for r in rows)

    # The release around it: one tiny placeholder PNG (same bytes for every path), a caption row
    # per image, and VQA.csv = the test rows (as in the authors' release, which contains them).
    buf = io.BytesIO()
    PILImage.new("RGB", (2, 2), (180, 120, 100)).save(buf, "PNG")
    png = buf.getvalue()
    root = tmp_path / "release"
    (root / "MM-SkinQA/dataset").mkdir(parents=True)
    for rel in images:
        (root / "MM-SkinQA" / rel).write_bytes(png)
    modality = {1: "dermoscopy", 10: "pathology"}
    with open(root / "MM-SkinQA/caption.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["image", "cleaned_caption", "modality"])
        for rel in images:
            book = int(re.match(r"dataset/bk(\d+)_", rel).group(1))
            w.writerow([rel, f"Placeholder caption for {rel}.", modality.get(book, "skin")])
    with open(root / "MM-SkinQA/VQA.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["image", "question", "answer"])
        w.writerows([r["image"], r["question"], r["answer"]] for r in rows)

    out = tmp_path / "mm-skin"
    res = mm.build(root, out, test_csv=test_csv, num_proc=2)
    assert res.report.skipped == []
    ds = datasets.load_dataset(str(out), "vqa", split="test", cache_dir=str(tmp_path / "cache")).remove_columns("image")
    assert len(ds) == 5452 == len(rows)
    assert len(set(ds["image_id"])) == 4391
    assert collections.Counter(ds["textbook_id"]) == per_textbook
    assert collections.Counter(zip(ds["image_id"], ds["question"], ds["answer"], strict=True)) == collections.Counter(
        (Path(r["image"]).stem, r["question"].strip(), r["answer"].strip()) for r in rows
    )
    # the CSV's exact repeats stay (the paper's scores include them) and are flagged
    assert len([w for w in res.report.warnings if "kept: official test split" in w.reason]) == 3
    assert res.report.written["vqa"] == {"test": 5452}
    assert res.report.files["MM-SkinQA/VQA.csv"].rows_in_test_split == 5452
    assert sum(res.report.written[m]["test"] for m in mm.MODALITIES) == 4391
