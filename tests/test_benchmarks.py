"""``mm-skin benchmark build`` on stand-ins of each publisher's layout (tiny generated images)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import benchmark_layouts as layouts
import datasets
import pytest

import mm_skin_dataset
from mm_skin.benchmarks.write import build_benchmark
from mm_skin.report import ReleaseError


def _load(folder: Path, config: str | None = None) -> datasets.DatasetDict:
    return datasets.load_dataset(str(folder), config, cache_dir=str(folder.parent / "cache"))


def test_ham10000_default_config_loads_with_lesions_kept_together(tmp_path):
    source = layouts.ham10000(tmp_path / "ham", n=40)
    result = build_benchmark("ham10000", source, tmp_path / "out", seed=3, test_fraction=0.3)
    ds = _load(tmp_path / "out")
    assert set(ds) <= {"train", "validation", "test"} and "test" in ds
    row = ds["train"][0]
    assert ds["train"].features["label"].names[0] == "Actinic Keratoses"
    assert row["image"].size == (16, 16) and row["sex"] in ("male", "female") and row["site"] == "back"
    assert row["source"] == "vidir_modern"
    sides = {}
    for split, part in ds.items():
        for lesion in part["lesion_id"]:
            sides.setdefault(lesion, set()).add(split)
    assert all(len(s) == 1 for s in sides.values())
    assert sum(len(part) for part in ds.values()) == 40
    report = json.loads((tmp_path / "out" / "build_report.json").read_text())
    assert report["split"]["rows"] == {k: len(v) for k, v in ds.items()}
    assert len(report["split"]["moved_rows"]) == len(result.split.moved)
    # the original bytes are stored
    raw = ds["train"].cast_column("image", datasets.Image(decode=False))[0]["image"]["bytes"]
    assert raw == next(source.rglob(f"{row['image_id']}.jpg")).read_bytes()


def test_seed_changes_split_and_same_seed_repeats(tmp_path):
    source = layouts.ham10000(tmp_path / "ham", n=40)
    a = build_benchmark("ham10000", source, tmp_path / "a", seed=1).split.splits
    b = build_benchmark("ham10000", source, tmp_path / "b", seed=1).split.splits
    c = build_benchmark("ham10000", source, tmp_path / "c", seed=2).split.splits
    ids = lambda s: {k: [r.image_id for r in v] for k, v in s.items()}  # noqa: E731
    assert ids(a) == ids(b) and ids(a) != ids(c)


def test_ddi_skin_type_groups_and_configs(tmp_path):
    build_benchmark("ddi", layouts.ddi(tmp_path / "ddi"), tmp_path / "out")
    ds = _load(tmp_path / "out")
    rows = [r for part in ds.values() for r in part]
    assert {r["skin_type"] for r in rows} == {"I-II", "III-IV", "V-VI"}
    assert ds["train"].features["label"].names == ["benign", "malignant"]
    disease = _load(tmp_path / "out", "disease")
    assert disease["train"].features["label"].names == ["melanoma-in-situ", "seborrheic-keratosis"]
    from mm_skin.hub import validate_folder  # what `mm-skin push` checks before uploading

    counts = validate_folder(tmp_path / "out")
    assert counts["malignancy"] == {split: len(part) for split, part in ds.items()}


def test_fitzpatrick17k_unknown_skin_type_is_null_and_three_configs(tmp_path):
    build_benchmark("fitzpatrick17k", layouts.fitzpatrick17k(tmp_path / "f"), tmp_path / "out")
    ds = _load(tmp_path / "out")
    types = [r["skin_type"] for part in ds.values() for r in part]
    assert None in types and set(types) - {None} <= {"I", "II", "III", "IV", "V", "VI"}
    assert ds["train"].features["label"].names == ["benign", "malignant", "non-neoplastic"]
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "cc-by-nc-sa-3.0" in readme and "private or gated" in readme
    for config in ("nine_partition", "disease"):
        assert _load(tmp_path / "out", config)


def test_pad_ufes_20_patients_on_one_side(tmp_path):
    build_benchmark("pad-ufes-20", layouts.pad_ufes_20(tmp_path / "p", n=30), tmp_path / "out", seed=5,
                    test_fraction=0.4)
    ds = _load(tmp_path / "out")
    sides = {}
    for split, part in ds.items():
        for patient in part["patient_id"]:
            sides.setdefault(patient, set()).add(split)
    assert all(len(s) == 1 for s in sides.values())
    assert "Seborrheic Keratosis" in ds["train"].features["label"].names
    assert {r["sex"] for part in ds.values() for r in part} == {"male", "female"}


def test_dermnet_folders_are_the_split(tmp_path):
    source = layouts.dermnet(tmp_path / "d")
    # one file name in two class folders: both are read (the class folder tells them apart)
    (source / "train" / "Eczema Photos" / "train-0-0.jpg").write_bytes(layouts.image_bytes(999))
    (source / "train" / "loose.jpg").write_bytes(layouts.image_bytes(998))
    result = build_benchmark("dermnet", source, tmp_path / "out")
    ds = _load(tmp_path / "out")
    assert {k: len(v) for k, v in ds.items()} == {"train": 9, "test": 4}
    assert "train/: 1 image files not directly inside a class folder were not read" in result.report.notes
    assert ds["test"].features["label"].names == ["Acne and Rosacea Photos", "Eczema Photos"]


def test_isic2019_unk_rows_listed(tmp_path):
    source = layouts.isic2019(tmp_path / "i", n=18)  # k % 8 never marks UNK: add one UNK row by hand
    truth = source / "ISIC_2019_Training_GroundTruth.csv"
    truth.write_text(truth.read_text() + "ISIC_9999999,0,0,0,0,0,0,0,0,1.0\n")
    build_benchmark("isic2019", source, tmp_path / "out")
    report = json.loads((tmp_path / "out" / "build_report.json").read_text())
    assert [s["reason"] for s in report["skipped"]] == ["no class marked 1.0 (UNK or blank)"]
    assert report["files"]["ISIC_2019_Training_GroundTruth.csv"]["rows_read"] == 19


def test_test_file_maps_spellings_and_lists_unmapped_and_conflicts(tmp_path):
    source = layouts.ddi(tmp_path / "ddi")
    test_file = layouts.authors_test_file(tmp_path / "DDI_2class_test.csv", [
        ("DDI/000001.png", "Malignant"), ("DDI/000002.png", "Non-Malignant"), ("DDI/000003.png", "Cancer"),
        ("DDI/000002.png", "Malignant"), ("DDI/000404.png", "Malignant")])
    result = build_benchmark("ddi", source, tmp_path / "out", test_file=str(test_file))
    ds = _load(tmp_path / "out")
    names = ds["test"].features["label"].names
    assert [(r["image_id"], names[r["label"]]) for r in ds["test"]] == [("000001", "malignant"), ("000002", "benign")]
    reasons = {s["row"]: s["reason"] for s in result.report.as_dict()["skipped"]}
    assert "label not mapped" in reasons[4]
    assert "label conflict" in reasons[5]
    assert reasons[6] == "image file not found under SOURCE"
    assert len(ds["train"]) == 12 - 2


def test_authors_only_benchmark_needs_test_file_and_finds_images(tmp_path):
    images = tmp_path / "hiba"
    (images / "HIBA").mkdir(parents=True)
    for i in range(4):
        (images / "HIBA" / f"ISIC_{i:07d}.jpg").write_bytes(layouts.image_bytes(i))
    with pytest.raises(ReleaseError, match="pass --test-file"):
        build_benchmark("hiba", images, tmp_path / "out")
    test_file = layouts.authors_test_file(tmp_path / "HIBA_2class_test.csv", [
        (f"HIBA/ISIC_{i:07d}.jpg", "Malignant" if i % 2 else "Benign") for i in range(4)] + [("../../etc/passwd", "Benign")])
    result = build_benchmark("hiba", images, tmp_path / "out", test_file=str(test_file))
    assert result.counts == {"label": {"test": 4}}
    [refused] = result.report.as_dict()["skipped"]
    assert refused["row"] == 6 and refused["reason"].startswith("image path refused: '..' in the path")


def test_real_authors_ham10000_file_maps_every_label(tmp_path, shared_dir):
    real = shared_dir / "mmskin-release" / "Dataframe" / "test" / "classification" / "HAM10000_test.csv"
    if not real.is_file():
        pytest.skip(f"{real} is absent")
    source = layouts.ham10000(tmp_path / "ham", n=14)
    # two of the authors' test images, present as files (the ISIC 2018 Task 3 test images)
    folder = source / "ISIC2018_Task3_Test_Images"
    folder.mkdir()
    for i, image_id in enumerate(("ISIC_0034524", "ISIC_0034525")):
        (folder / f"{image_id}.jpg").write_bytes(layouts.image_bytes(900 + i))
    result = build_benchmark("ham10000", source, tmp_path / "out", test_file=str(real))
    skipped = result.report.as_dict()["skipped"]
    assert result.counts["dx"]["test"] == 2
    assert all(s["reason"] == "image file not found under SOURCE" for s in skipped)  # every label was mapped
    assert len(skipped) == 1511 - 2


def test_cli_bad_input_is_one_line_exit_2(tmp_path, capsys):
    source = tmp_path / "ham"
    source.mkdir()
    code = mm_skin_dataset.main(["benchmark", "build", "ham10000", str(source), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "HAM10000_metadata.csv: not found" in err


def test_cli_builds_and_refuses_to_overwrite(tmp_path, capsys):
    source = layouts.ddi(tmp_path / "ddi")
    argv = ["benchmark", "build", "ddi", str(source), "--out", str(tmp_path / "out")]
    assert mm_skin_dataset.main(argv) == 0
    assert mm_skin_dataset.main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert mm_skin_dataset.main([*argv, "--overwrite"]) == 0


def test_dataset_side_imports_no_torch():
    import subprocess

    code = "import sys, mm_skin.benchmarks.write; print('torch' in sys.modules or 'skinvl' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_docstring_examples_run():
    import doctest
    import importlib

    for name in ("mm_skin.benchmarks", "mm_skin.audit_clusters", "skinvl.evaluation.zeroshot_protocols"):
        result = doctest.testmod(importlib.import_module(name))
        assert result.failed == 0 and result.attempted >= 1, name


def test_dermnet_authors_file_maps_folder_names_and_keeps_two_class_images(tmp_path):
    source = layouts.dermnet(tmp_path / "d")
    twin = source / "test" / "Eczema Photos" / "test-0-0.jpg"  # the same file name under a second class
    twin.write_bytes((source / "test" / "Acne and Rosacea Photos" / "test-0-0.jpg").read_bytes())
    test_file = layouts.authors_test_file(tmp_path / "Dermnet_test.csv", [
        ("Dermnet/test/Acne and Rosacea Photos/test-0-0.jpg", "Acne and Rosacea"),
        ("Dermnet/test/Eczema Photos/test-0-0.jpg", "Eczema"),
        ("Dermnet/test/Eczema Photos/test-1-0.jpg", "Eczema")])
    result = build_benchmark("dermnet", source, tmp_path / "out", test_file=str(test_file))
    ds = _load(tmp_path / "out")
    names = ds["test"].features["label"].names
    assert sorted((r["image_id"], names[r["label"]]) for r in ds["test"]) == [
        ("Acne and Rosacea Photos/test-0-0", "Acne and Rosacea Photos"),
        ("Eczema Photos/test-0-0", "Eczema Photos"), ("Eczema Photos/test-1-0", "Eczema Photos")]
    assert result.report.skipped == [] and len(ds["train"]) == 13 - 3  # 12 stand-in files + the twin


def test_links_out_and_special_files_are_never_read(tmp_path):
    import os

    source = layouts.ddi(tmp_path / "ddi", n=4)
    outside = tmp_path / "secret.png"
    outside.write_bytes(layouts.image_bytes(1, "PNG"))
    (source / "images" / "000002.png").unlink()
    (source / "images" / "000002.png").symlink_to(outside)  # a link out of SOURCE
    (source / "images" / "000003.png").unlink()
    os.mkfifo(source / "images" / "000003.png")  # a named pipe: opening it for reading would hang
    result = build_benchmark("ddi", source, tmp_path / "out")
    reasons = {s["value"]: s["reason"] for s in result.report.as_dict()["skipped"]}
    assert reasons["000002.png"] == "image file not found under SOURCE"
    assert reasons["000003.png"].startswith("not a regular file")
    assert "1 symbolic links under SOURCE were not followed" in result.report.notes
    assert sum(result.counts["malignancy"].values()) == 2


def test_official_one_hot_ground_truth_as_test_file(tmp_path):
    source = layouts.ham10000(tmp_path / "ham", n=10)
    test_images = source / "ISIC2018_Task3_Test_Images"
    test_images.mkdir()
    for i in range(3):
        (test_images / f"ISIC_{34524 + i:07d}.jpg").write_bytes(layouts.image_bytes(800 + i))
    codes = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
    truth = layouts.write_csv(tmp_path / "ISIC2018_Task3_Test_GroundTruth.csv", ["image", *codes], [
        [f"ISIC_{34524 + i:07d}", *[1.0 if j == hot else 0.0 for j in range(7)]] for i, hot in enumerate((3, 6, 1))])
    result = build_benchmark("ham10000", source, tmp_path / "out", test_file=str(truth))
    ds = _load(tmp_path / "out")
    names = ds["test"].features["label"].names
    assert [names[r["label"]] for r in ds["test"]] == ["Actinic Keratoses", "Vascular lesions", "Nevus"]
    assert result.report.skipped == [] and len(ds["train"]) == 10


def test_test_file_moves_the_rest_of_a_patient_to_test(tmp_path):
    source = layouts.pad_ufes_20(tmp_path / "pad", n=9)  # patients of 3 images each
    first = "PAT_0_0_0.png"
    test_file = layouts.authors_test_file(tmp_path / "PAD_test.csv", [(f"PAD/{first}", "Actinic Keratosis")])
    result = build_benchmark("pad-ufes-20", source, tmp_path / "out", test_file=str(test_file))
    assert sorted(result.split.moved) == ["PAT_0_1_7", "PAT_0_2_14"]
    assert result.counts["diagnostic"] == {"train": 6, "test": 3}
    report = json.loads((tmp_path / "out" / "build_report.json").read_text())
    assert report["split"]["moved_rows"] == result.split.moved


def test_card_sizes_are_what_datasets_computes(tmp_path):
    """num_bytes as datasets' Parquet builder computes it for the same files (rows in Arrow memory)."""
    import shutil

    import yaml
    from huggingface_hub import DatasetCard

    build_benchmark("ddi", layouts.ddi(tmp_path / "ddi"), tmp_path / "out")
    card = DatasetCard.load(tmp_path / "out" / "README.md").data.to_dict()
    ours = {info["config_name"]: info for info in card.pop("dataset_info")}
    bare = Path(shutil.copytree(tmp_path / "out", tmp_path / "bare"))
    (bare / "README.md").write_text(f"---\n{yaml.safe_dump(card)}---\n", encoding="utf-8")
    for config, info in ours.items():
        builder = datasets.load_dataset_builder(str(bare), config, cache_dir=str(tmp_path / "cache"))
        builder.download_and_prepare()
        assert {s["name"]: s["num_bytes"] for s in info["splits"]} == {
            name: split.num_bytes for name, split in builder.info.splits.items()}, config
