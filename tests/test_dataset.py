"""mm_skin_dataset + mm_skin: the sample release end to end, and every bad-input path on tiny releases."""

from __future__ import annotations

import collections
import csv
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest
from PIL import Image as PILImage

import mm_skin_dataset as mm
from mm_skin.cli import ExitCode
from mm_skin.release import find_test_csv
from mm_skin.schema import normalize_modality

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "examples" / "mm-skin-sample"


def _png(color: tuple[int, int, int] = (200, 120, 90), size: tuple[int, int] = (6, 5)) -> bytes:
    buf = io.BytesIO()
    PILImage.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def write_csv(path: Path, header: list[str], rows: list[list[str]], bom: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8-sig" if bom else "utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def make_release(
    root: Path,
    *,
    captions: list[list[str]] | None = None,
    vqa: list[list[str]] | None = None,
    test: list[list[str]] | None = None,
    caption_header: list[str] | None = None,
    vqa_header: list[str] | None = None,
    images: dict[str, bytes] | None = None,
    bom: bool = False,
) -> Path:
    """A tiny release in the authors' layout: MM-SkinQA/{caption.csv,VQA.csv,dataset/} (+ test CSV)."""
    qa = root / "MM-SkinQA"
    (qa / "dataset").mkdir(parents=True, exist_ok=True)
    if captions is None:
        captions = [
            ["dataset/bk1_1_1.png", "Dermoscopy of a naevus.", "dermoscopy"],
            ["dataset/bk3_2_1.png", "A 45-year-old man with a plaque.", "skin"],
            ["dataset/bk10_3_1.png", "Histology of a carcinoma.", "pathology"],
            ["dataset/bk15_4.png", "Erythema on the leg of a woman.", "skin"],
        ]
    if vqa is None:
        vqa = [
            ["dataset/bk1_1_1.png", "What is shown?", "A naevus."],
            ["dataset/bk3_2_1.png", "What is shown?", "A plaque."],
            ["dataset/bk3_2_1.png", "Where?", "The arm."],
            ["dataset/bk10_3_1.png", "What tissue?", "Carcinoma."],
            ["dataset/bk15_4.png", "What colour?", "Red."],
        ]
    write_csv(qa / "caption.csv", caption_header or ["image", "cleaned_caption", "modality"], captions, bom)
    write_csv(qa / "VQA.csv", vqa_header or ["image", "question", "answer"], vqa, bom)
    if images is None:
        images = {}
        for i, row in enumerate(captions):
            images.setdefault(row[0], _png((40 * i % 255, 100, 150)))
    for rel, data in images.items():
        (qa / rel).parent.mkdir(parents=True, exist_ok=True)
        (qa / rel).write_bytes(data)
    if test is not None:
        write_csv(root / "Dataframe/test/vqa/MM-Skin_test.csv", ["image", "question", "answer"], test)
    return root


def report_of(out: Path) -> dict:
    return json.loads((out / "build_report.json").read_text())


# --------------------------------------------------------------------------------------------
# The sample release, built once for the module
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("built") / "mm-skin"
    rc = mm.main(["build", str(SAMPLE), "--out", str(out), "--num-proc", "2"])
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("hf-cache"))


def test_sample_is_small_and_in_the_authors_layout() -> None:
    files = [p for p in SAMPLE.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 300_000
    assert (SAMPLE / "MM-SkinQA/caption.csv").is_file() and (SAMPLE / "MM-SkinQA/VQA.csv").is_file()
    assert (SAMPLE / "Dataframe/test/vqa/MM-Skin-sample_test.csv").is_file()
    pngs = list((SAMPLE / "MM-SkinQA/dataset").glob("bk*.png"))
    assert len(pngs) >= 24
    with open(SAMPLE / "MM-SkinQA/caption.csv", encoding="utf-8") as f:
        modalities = collections.Counter(r["modality"] for r in csv.DictReader(f))
    assert set(modalities) == {"skin", "dermoscopy", "pathology"}


def test_every_config_loads_with_load_dataset(sample_out: Path, cache_dir: str) -> None:
    report = report_of(sample_out)
    for cfg in ("vqa", "clinical", "dermoscopic", "pathology", "captions", "instruct"):
        ds = datasets.load_dataset(str(sample_out), cfg, cache_dir=cache_dir)
        assert {s: len(d) for s, d in ds.items()} == report["written"][cfg], cfg
        first = next(iter(ds.values()))[0]
        img = first["image"] if "image" in first else first["images"][0]
        assert isinstance(img, PILImage.Image) and img.size[0] > 0
        img.load()
    vqa = datasets.load_dataset(str(sample_out), "vqa", split="test", cache_dir=cache_dir)
    assert isinstance(vqa.features["image"], datasets.Image)
    assert vqa.features["modality"].names == ["clinical", "dermoscopic", "pathology"]
    assert list(vqa.features) == ["image", "image_id", "question", "answer", "modality", "textbook_id", "textbook",
                                  "question_id", "answer_type", "image_in_test"]  # issue 13 appended the last three
    cap = datasets.load_dataset(str(sample_out), "clinical", split="train", cache_dir=cache_dir)
    assert list(cap.features) == ["image", "image_id", "caption", "modality", "textbook_id", "textbook", "age", "sex"]
    assert set(cap["modality"]) == {0}


def test_streaming_every_config(sample_out: Path) -> None:
    for cfg in ("vqa", "clinical", "dermoscopic", "pathology", "captions", "instruct"):
        ds = datasets.load_dataset(str(sample_out), cfg, streaming=True)
        for split in ds:
            row = next(iter(ds[split]))
            img = row["image"] if "image" in row else row["images"][0]
            img.load()
            assert img.mode in ("RGB", "RGBA", "L", "P")


def test_images_are_the_original_bytes(sample_out: Path) -> None:
    originals = {p.name: _sha(p.read_bytes()) for p in (SAMPLE / "MM-SkinQA/dataset").glob("*.png")}
    seen = 0
    for shard in sample_out.glob("*/*.parquet"):
        table = pq.read_table(shard)
        if "image" in table.column_names:
            values = table.column("image").to_pylist()
        else:
            values = [img for imgs in table.column("images").to_pylist() for img in imgs]
        for v in values:
            assert _sha(v["bytes"]) == originals[v["path"]], (shard, v["path"])
            seen += 1
    assert seen >= 60 + 30 + 6


def test_splits_follow_the_official_test_csv(sample_out: Path, cache_dir: str) -> None:
    with open(SAMPLE / "Dataframe/test/vqa/MM-Skin-sample_test.csv", encoding="utf-8") as f:
        official = collections.Counter((Path(r["image"]).stem, r["question"], r["answer"]) for r in csv.DictReader(f))
    ds = datasets.load_dataset(str(sample_out), "vqa", cache_dir=cache_dir).remove_columns("image")
    test = collections.Counter(zip(ds["test"]["image_id"], ds["test"]["question"], ds["test"]["answer"], strict=True))
    train = set(zip(ds["train"]["image_id"], ds["train"]["question"], ds["train"]["answer"], strict=True))
    assert test == official
    assert not train & set(official)
    with open(SAMPLE / "MM-SkinQA/VQA.csv", encoding="utf-8") as f:
        assert len(train) + len(set(official)) == sum(1 for _ in csv.DictReader(f))
    # caption rows are test exactly when their image is a test image
    caps = datasets.load_dataset(str(sample_out), "captions", cache_dir=cache_dir).remove_columns("image")
    test_images = {k[0] for k in official}
    assert set(caps["test"]["image_id"]) == test_images
    assert not set(caps["train"]["image_id"]) & test_images


def test_captions_config_reuses_the_modality_files(sample_out: Path) -> None:
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(sample_out / "README.md")
    configs = {c["config_name"]: c for c in card.data.to_dict()["configs"]}
    assert not (sample_out / "captions").exists()
    for split in ("train", "test"):
        paths = next(d["path"] for d in configs["captions"]["data_files"] if d["split"] == split)
        assert sorted(paths) == sorted(
            p for m in mm.MODALITIES for d in configs[m]["data_files"] if d["split"] == split for p in d["path"]
        )


def test_card_yaml_parses_and_matches_the_data(sample_out: Path) -> None:
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(sample_out / "README.md")
    data = card.data.to_dict()
    assert [c["config_name"] for c in data["configs"] if c.get("default")] == ["vqa"]
    assert data["license"] == "other" and data["license_name"]
    assert {"visual-question-answering", "image-to-text", "image-text-to-text"} <= set(data["task_categories"])
    assert "dermatology" in data["tags"] and data["language"] == ["en"] and data["pretty_name"] == "MM-Skin"
    assert data["size_categories"] == ["n<1K"]
    report = report_of(sample_out)
    infos = {i["config_name"]: i for i in data["dataset_info"]}
    for cfg, splits in report["written"].items():
        assert {s["name"]: s["num_examples"] for s in infos[cfg]["splits"]} == splits
    # the card's dataset_info is what datasets reads back
    features = datasets.DatasetInfo._from_yaml_dict(infos["instruct"]).features
    assert features == mm.INSTRUCT_FEATURES
    body = card.text
    assert "assets/statistics.png" in body and (sample_out / "assets/statistics.png").stat().st_size > 1000
    for title in mm.TEXTBOOKS.values():
        assert title in body
    for name, f in report["files"].items():
        assert f["sha256"] in body and name in body
    assert "@article{zeng2025mmskin" in body
    with PILImage.open(sample_out / "assets/statistics.png") as im:
        assert im.format == "PNG"


def test_card_usage_snippets_run(sample_out: Path, tmp_path: Path) -> None:
    body = (sample_out / "README.md").read_text()
    snippets = [s.split("```", 1)[0] for s in body.split("```python\n")[1:]]
    assert len(snippets) >= 2
    # run beside the folder, as a user would: load_dataset("mm-skin", ...) resolves the folder
    # by name, with none of our code imported
    # each snippet in its own interpreter, as a reader runs them
    outputs = []
    for index, snippet in enumerate(snippets):
        code = snippet + "\nimport sys\nassert 'mm_skin_dataset' not in sys.modules and 'skinvl' not in sys.modules\n"
        if "vqa = load_dataset(" in snippet:  # the Usage snippet
            code += "print('ROWS', len(vqa['train']), len(vqa['test']))\n"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_CACHE": str(tmp_path / "cache")}
        proc = subprocess.run([sys.executable, "-c", code], cwd=sample_out.parent, env=env, capture_output=True,
                              text=True, timeout=180)
        assert proc.returncode == 0, f"snippet {index}: {proc.stderr[-3000:]}"
        outputs.append(proc.stdout)
    written = report_of(sample_out)["written"]["vqa"]
    assert any(f"ROWS {written['train']} {written['test']}" in out for out in outputs)


def test_instruct_config_is_chat_messages(sample_out: Path, cache_dir: str) -> None:
    ds = datasets.load_dataset(str(sample_out), "instruct", split="train", cache_dir=cache_dir)
    src = json.loads((SAMPLE / "Dataframe/Pretrain/vqa_MM.json").read_text())
    assert ds["id"] == [r["id"] for r in src]
    assert set(ds["source"]) == {"vqa_MM"}
    first = ds[0]["messages"]
    assert first[0] == {"role": "user", "content": [{"type": "image", "text": None}, {"type": "text", "text": "Describe the lesion."}]}
    assert first[1]["role"] == "assistant"
    second = ds[1]["messages"]  # marker after the text, multi-turn
    assert second[0]["content"] == [{"type": "text", "text": "What dermoscopic structures are visible?"}, {"type": "image", "text": None}]
    assert [m["role"] for m in second] == ["user", "assistant", "user", "assistant"]
    assert len(ds[0]["images"]) == 1


def test_builder_class_gives_the_same_rows(sample_out: Path, tmp_path: Path) -> None:
    builder = mm.MMSkin(config_name="vqa", data_dir=str(SAMPLE), cache_dir=str(tmp_path / "c"))
    builder.download_and_prepare()
    built = builder.as_dataset(split="test")
    folder = datasets.load_dataset(str(sample_out), "vqa", split="test", cache_dir=str(tmp_path / "c2"))
    assert built.features == folder.features
    assert built.remove_columns("image").to_list() == folder.remove_columns("image").to_list()
    assert built[0]["image"].tobytes() == folder[0]["image"].tobytes()
    pathology = mm.MMSkin(config_name="pathology", data_dir=str(SAMPLE), cache_dir=str(tmp_path / "c"))
    pathology.download_and_prepare()
    assert set(pathology.as_dataset(split="train")["modality"]) == {2}


def test_report_lists_every_input_file(sample_out: Path) -> None:
    report = report_of(sample_out)
    assert set(report["files"]) == {
        "MM-SkinQA/caption.csv", "MM-SkinQA/VQA.csv", "Dataframe/test/vqa/MM-Skin-sample_test.csv", "Dataframe/Pretrain/vqa_MM.json"
    }
    vqa = report["files"]["MM-SkinQA/VQA.csv"]
    assert vqa["rows_read"] == vqa["rows_written"] + vqa["rows_skipped"] + vqa["rows_in_test_split"]
    assert report["skipped"] == [] and report["modality_values"]["skin"]["modality"] == "clinical"
    assert str(SAMPLE.parent) not in json.dumps(report)  # no local paths leak into a pushed repo


# --------------------------------------------------------------------------------------------
# Bad input on tiny releases
# --------------------------------------------------------------------------------------------


def test_missing_column_names_the_file_and_the_columns_found(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = make_release(tmp_path / "rel", caption_header=["image", "text", "modality"])
    rc = mm.main(["build", str(src), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == ExitCode.BAD_INPUT
    assert "MM-SkinQA/caption.csv" in err and "'caption'" in err and "'text'" in err and "cleanedcaption" in err
    assert not (tmp_path / "out").exists()


def test_bom_and_column_spelling_are_accepted(tmp_path: Path) -> None:
    src = make_release(tmp_path / "rel", caption_header=[" Image ", "Cleaned Caption", "MODALITY"],
                       vqa_header=["IMAGE", " question", "Answer "], bom=True)
    res = mm.build(src, tmp_path / "out")
    assert res.report.written["vqa"] == {"train": 5}
    assert sum(res.report.written[m]["train"] for m in mm.MODALITIES) == 4


def test_bad_images_are_left_out_and_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = _png()
    captions = [
        ["dataset/bk1_1.png", "Fine.", "skin"],
        ["dataset/bk1_2.png", "Missing file.", "skin"],
        ["dataset/bk1_3.png", "Empty file.", "skin"],
        ["dataset/bk1_4.png", "Random bytes.", "skin"],
        ["dataset/bk1_5.png", "Truncated PNG.", "skin"],
    ]
    images = {"dataset/bk1_1.png": good, "dataset/bk1_3.png": b"", "dataset/bk1_4.png": os.urandom(200),
              "dataset/bk1_5.png": good[: len(good) // 2]}
    vqa = [["dataset/bk1_1.png", "Q?", "A."], ["dataset/bk1_4.png", "Q?", "A."]]
    src = make_release(tmp_path / "rel", captions=captions, vqa=vqa, images=images)
    rc = mm.main(["build", str(src), "--out", str(tmp_path / "out")])
    assert rc == 0
    err = capsys.readouterr().err
    assert "NOT written" in err
    report = report_of(tmp_path / "out")
    reasons = {(i["file"], i["row"]): i["reason"] for i in report["skipped"]}
    assert reasons[("MM-SkinQA/caption.csv", 3)] == "missing image file"
    assert reasons[("MM-SkinQA/caption.csv", 4)] == "empty image file"
    assert reasons[("MM-SkinQA/caption.csv", 5)].startswith("undecodable image")
    assert reasons[("MM-SkinQA/caption.csv", 6)].startswith("undecodable image")
    assert reasons[("MM-SkinQA/VQA.csv", 3)].startswith("undecodable image")
    assert all(i["value"] for i in report["skipped"])
    assert report["written"]["clinical"] == {"train": 1} and report["written"]["vqa"] == {"train": 1}
    files = report["files"]
    assert files["MM-SkinQA/caption.csv"]["rows_skipped"] == 4 and files["MM-SkinQA/caption.csv"]["rows_written"] == 1


def test_empty_texts_and_duplicates_are_reported(tmp_path: Path) -> None:
    captions = [
        ["dataset/bk1_1.png", "A caption.", "skin"],
        ["dataset/bk1_2.png", "   ", "skin"],
        ["dataset/bk1_1.png", "A caption.", "skin"],  # exact duplicate of row 2
    ]
    vqa = [
        ["dataset/bk1_1.png", "Q?", "A."],
        ["dataset/bk1_1.png", "", "A."],
        ["dataset/bk1_1.png", "Q2?", ""],
        ["dataset/bk1_1.png", "Q?", "A."],
    ]
    src = make_release(tmp_path / "rel", captions=captions, vqa=vqa, images={"dataset/bk1_1.png": _png(), "dataset/bk1_2.png": _png()})
    res = mm.build(src, tmp_path / "out")
    skipped = {(i.file, i.row): i.reason for i in res.report.skipped}
    assert skipped == {
        ("MM-SkinQA/caption.csv", 3): "empty caption",
        ("MM-SkinQA/caption.csv", 4): "duplicate of row 2",
        ("MM-SkinQA/VQA.csv", 3): "empty question",
        ("MM-SkinQA/VQA.csv", 4): "empty answer",
        ("MM-SkinQA/VQA.csv", 5): "duplicate of row 2",
    }
    assert res.report.written["vqa"] == {"train": 1}


def test_strict_fails_and_leaves_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vqa = [["dataset/bk1_1_1.png", "Q?", ""], ["dataset/bk3_2_1.png", "Q?", "A."]]
    src = make_release(tmp_path / "rel", vqa=vqa)
    out = tmp_path / "out"
    rc = mm.main(["build", str(src), "--out", str(out), "--strict"])
    assert rc == ExitCode.STRICT
    assert "empty answer" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".out*"))
    assert mm.main(["build", str(src), "--out", str(out)]) == 0


def test_unmapped_modality_lists_values_counts_and_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    captions = [
        ["dataset/bk1_1.png", "a", "skin"],
        ["dataset/bk1_2.png", "b", "Dermoscopic Img"],
        ["dataset/bk1_3.png", "c", "Dermoscopic Img"],
        ["dataset/bk1_4.png", "d", "HE slide"],
    ]
    src = make_release(tmp_path / "rel", captions=captions, vqa=[])
    rc = mm.main(["build", str(src), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == ExitCode.BAD_INPUT
    assert "'Dermoscopic Img': 2 rows" in err and "'HE slide': 1 rows" in err and "--modality-map" in err
    rc = mm.main(["build", str(src), "--out", str(tmp_path / "out"),
                  "--modality-map", "dermoscopic img=dermoscopic", "HE slide=pathology"])
    assert rc == 0
    report = report_of(tmp_path / "out")
    assert report["written"]["dermoscopic"] == {"train": 2} and report["written"]["pathology"] == {"train": 1}
    with pytest.raises(mm.ReleaseError, match="not a modality"):
        mm.parse_modality_map(["x=radiology"])


@pytest.mark.parametrize(
    ("value", "modality"),
    [("skin", "clinical"), ("Clinical", "clinical"), ("photo", "clinical"), ("dermoscopy", "dermoscopic"),
     ("Dermatoscopy", "dermoscopic"), ("derm", "dermoscopic"), ("pathology", "pathology"),
     ("histopathology", "pathology"), ("Histology", "pathology"), ("path", "pathology")],
)
def test_modality_aliases(value: str, modality: str) -> None:
    assert mm.MODALITY_ALIASES[normalize_modality(value)] == modality


def test_unknown_textbook_prefix_is_kept_and_reported(tmp_path: Path) -> None:
    captions = [["dataset/bk1_1.png", "a", "skin"], ["dataset/bk16_1.png", "b", "skin"], ["dataset/fig_2.png", "c", "skin"]]
    src = make_release(tmp_path / "rel", captions=captions, vqa=[])
    res = mm.build(src, tmp_path / "out")
    warned = {i.value for i in res.report.warnings if "unknown textbook" in i.reason}
    assert warned == {"dataset/bk16_1.png", "dataset/fig_2.png"}
    table = pq.read_table(tmp_path / "out/clinical/train-00000-of-00001.parquet", columns=["image_id", "textbook_id", "textbook"])
    rows = {r["image_id"]: (r["textbook_id"], r["textbook"]) for r in table.to_pylist()}
    assert rows == {"bk1_1": (1, mm.TEXTBOOKS[1]), "bk16_1": (None, None), "fig_2": (None, None)}
    assert mm.main(["build", str(src), "--out", str(tmp_path / "strict"), "--strict"]) == ExitCode.STRICT


def test_without_test_csv_everything_is_train(tmp_path: Path) -> None:
    src = make_release(tmp_path / "rel")
    res = mm.build(src, tmp_path / "out")
    assert all(set(splits) == {"train"} for splits in res.report.written.values())
    assert any("no official test CSV" in n for n in res.report.notes)
    assert "No official test CSV" in (tmp_path / "out/README.md").read_text()


def test_test_csv_option_and_duplicates_in_the_official_split_are_kept(tmp_path: Path) -> None:
    src = make_release(tmp_path / "rel")
    test_csv = tmp_path / "elsewhere.csv"
    rows = [["dataset/bk3_2_1.png", "Where?", "The arm."], ["dataset/bk1_1_1.png", "New?", "Yes."],
            ["dataset/bk3_2_1.png", "Where?", "The arm."]]
    write_csv(test_csv, ["image", "question", "answer"], rows)
    res = mm.build(src, tmp_path / "out", test_csv=test_csv)
    assert res.report.written["vqa"] == {"test": 3, "train": 4}
    assert [i.reason for i in res.report.warnings] == ["duplicate of row 2 (kept: official test split)"]
    assert res.report.written["clinical"] == {"test": 1, "train": 1}


def test_overwrite_and_atomic_replace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = make_release(tmp_path / "rel")
    out = tmp_path / "out"
    assert mm.main(["build", str(src), "--out", str(out)]) == 0
    marker = out / "marker.txt"
    marker.write_text("old")
    assert mm.main(["build", str(src), "--out", str(out)]) == ExitCode.BAD_INPUT
    assert "--overwrite" in capsys.readouterr().err and marker.exists()
    # a failing rebuild leaves the old folder as it was
    (src / "MM-SkinQA/VQA.csv").write_text("image,question\nx,y\n")
    assert mm.main(["build", str(src), "--out", str(out), "--overwrite"]) == ExitCode.BAD_INPUT
    assert marker.exists()
    make_release(src)
    assert mm.main(["build", str(src), "--out", str(out), "--overwrite"]) == 0
    assert not marker.exists() and (out / "README.md").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "rel"]


def test_num_proc_does_not_change_the_output(tmp_path: Path) -> None:
    captions = [[f"dataset/bk{1 + i % 15}_{i}.png", f"Caption {i}.", ["skin", "dermoscopy", "pathology"][i % 3]] for i in range(40)]
    vqa = [[c[0], f"Q{j}?", f"A{j}."] for c in captions for j in range(2)]
    images = {c[0]: _png((i * 6 % 255, 80, 120)) for i, c in enumerate(captions)}
    images[captions[7][0]] = b"not an image"
    src = make_release(tmp_path / "rel", captions=captions, vqa=vqa, images=images,
                       test=[captions[3][:1] + ["Q0?", "A0."], captions[10][:1] + ["Q1?", "A1."]])
    a = mm.build(src, tmp_path / "a", num_proc=1)
    b = mm.build(src, tmp_path / "b", num_proc=3)
    for shard in sorted((tmp_path / "a").glob("*/*.parquet")):
        other = tmp_path / "b" / shard.relative_to(tmp_path / "a")
        assert pq.read_table(shard).equals(pq.read_table(other)), shard
    assert [i.as_dict() for i in a.report.skipped] == [i.as_dict() for i in b.report.skipped]
    assert (tmp_path / "a/README.md").read_text() == (tmp_path / "b/README.md").read_text()
    assert (tmp_path / "a/assets/statistics.png").read_bytes() == (tmp_path / "b/assets/statistics.png").read_bytes()


def test_sharding_by_size(tmp_path: Path) -> None:
    captions = [[f"dataset/bk1_{i}.png", f"c{i}", "skin"] for i in range(12)]
    images = {c[0]: _noise_png(i) for i, c in enumerate(captions)}
    src = make_release(tmp_path / "rel", captions=captions, vqa=[], images=images)
    res = mm.build(src, tmp_path / "out", max_shard_size=20_000)
    shards = res.shards["clinical"]["train"]
    assert len(shards) > 1
    assert shards[0].endswith(f"train-00000-of-{len(shards):05d}.parquet")
    ds = datasets.load_dataset(str(tmp_path / "out"), "clinical", split="train", cache_dir=str(tmp_path / "c"))
    assert ds["image_id"] == [f"bk1_{i}" for i in range(12)]


def _noise_png(seed: int) -> bytes:
    import random

    rng = random.Random(seed)
    img = PILImage.frombytes("RGB", (48, 48), bytes(rng.randrange(256) for _ in range(48 * 48 * 3)))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def test_bare_file_names_and_mm_skinqa_root(tmp_path: Path) -> None:
    # image column without the dataset/ prefix; SOURCE pointing at MM-SkinQA itself
    captions = [["bk1_1.png", "a", "skin"]]
    src = make_release(tmp_path / "rel", captions=captions, vqa=[["bk1_1.png", "q", "a"]],
                       images={"dataset/bk1_1.png": _png()})
    res = mm.build(src / "MM-SkinQA", tmp_path / "out")
    assert res.report.written["vqa"] == {"train": 1}


# --------------------------------------------------------------------------------------------
# Instruction JSON
# --------------------------------------------------------------------------------------------


def test_malformed_instruct_json_file_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = make_release(tmp_path / "rel")
    bad = tmp_path / "vqa_bad.json"
    bad.write_text('[{"image": "dataset/bk1_1_1.png", "conversations": [}')
    rc = mm.main(["build", str(src), "--out", str(tmp_path / "out"), "--instruct-json", str(bad)])
    assert rc == ExitCode.BAD_INPUT
    assert "vqa_bad.json: malformed JSON" in capsys.readouterr().err


def test_bad_instruct_records_are_reported_with_their_index(tmp_path: Path) -> None:
    src = make_release(tmp_path / "rel")
    good = {"image": "dataset/bk1_1_1.png", "conversations": [{"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": "A naevus."}]}
    records = [
        good,
        {"conversations": good["conversations"]},  # no image
        {"image": "dataset/bk1_1_1.png", "conversations": [{"from": "human", "value": "<image>\nWhat?"}]},  # no assistant
        {"image": "dataset/bk1_1_1.png", "conversations": "nope"},
        {"image": "dataset/missing.png", "conversations": good["conversations"]},
        {"image": "dataset/bk3_2_1.png", "conversations": [{"from": "human", "value": "<image> <image> two?"}, {"from": "gpt", "value": "x"}]},
        {"image": "dataset/bk3_2_1.png", "conversations": [{"from": "human", "value": "No marker here?"}, {"from": "gpt", "value": "ok"}]},
        "not an object",
    ]
    path = tmp_path / "vqa_MM.json"
    path.write_text(json.dumps(records))
    res = mm.build(src, tmp_path / "out", instruct_json=[path])
    skipped = {i.row: i.reason for i in res.report.skipped}
    assert skipped[1] == "conversation without an image"
    assert skipped[2] == "malformed conversation: no assistant (gpt) turn"
    assert skipped[3].startswith("malformed conversation: 'conversations' is missing")
    assert skipped[4] == "missing image file"
    assert "markers" in skipped[5]
    assert skipped[7] == "record is not a JSON object"
    assert set(skipped) == {1, 2, 3, 4, 5, 7}
    ds = datasets.load_dataset(str(tmp_path / "out"), "instruct", split="train", cache_dir=str(tmp_path / "c"))
    assert ds["id"] == ["vqa_MM-0", "vqa_MM-6"]
    assert ds[1]["messages"][0]["content"][0] == {"type": "image", "text": None}


def test_llava_to_messages_roles_and_marker_position() -> None:
    msgs = mm.llava_to_messages([
        {"from": "human", "value": "Describe.\n<image>"}, {"from": "gpt", "value": "Red."},
        {"from": "human", "value": "More?"}, {"from": "gpt", "value": "No."},
    ])
    assert msgs[0] == {"role": "user", "content": [{"type": "text", "text": "Describe."}, {"type": "image", "text": None}]}
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant"]
    with pytest.raises(ValueError, match="unknown speaker"):
        mm.llava_to_messages([{"from": "robot", "value": "x"}])
    with pytest.raises(ValueError, match="in a assistant turn"):
        mm.llava_to_messages([{"from": "human", "value": "q"}, {"from": "gpt", "value": "<image> a"}])


# --------------------------------------------------------------------------------------------
# Demographics (MM-Skin-D)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A 45-year-old man with a pearly papule.", (45, "male")),
        ("Plaques on the back of a 62-year-old woman.", (62, "female")),
        ("A 30 year old male presented with nodules.", (30, "male")),
        ("Patient aged 71, female, with a scaly patch.", (71, "female")),
        ("A girl, 12 years of age, with acral naevi.", (12, "female")),
        ("A six-year-old boy with eczema.", (6, "male")),
        ("Forty-two-year-old woman with vitiligo.", (42, "female")),
        ("A 4-month-old girl with a haemangioma.", (0, "female")),
        ("Newborn with collodion membrane.", (0, None)),
        ("Infant with seborrhoeic dermatitis of the scalp.", (0, None)),
        ("Lesions on her left cheek.", (None, "female")),
        ("He noticed the nodule last year.", (None, "male")),
        ("Male pattern hair loss.", (None, None)),
        ("A man and his wife both had scabies.", (None, None)),
        ("Histology of a basal cell carcinoma.", (None, None)),
        ("Lesions in a man in his 40s.", (None, "male")),
        ("A 250-year-old tree.", (None, None)),
    ],
)
def test_parse_age_sex(text: str, expected: tuple[int | None, str | None]) -> None:
    assert mm.parse_age_sex(text) == expected


def test_age_and_sex_columns_win_over_the_caption(tmp_path: Path) -> None:
    captions = [["dataset/bk1_1.png", "A 45-year-old man.", "skin", "50", "F"],
                ["dataset/bk1_2.png", "A 45-year-old man.", "skin", "", ""],
                ["dataset/bk1_3.png", "Nothing.", "skin", "unknown", "x"]]
    src = make_release(tmp_path / "rel", captions=captions, vqa=[],
                       caption_header=["image", "cleaned_caption", "modality", "Age", "Gender"])
    mm.build(src, tmp_path / "out")
    t = pq.read_table(tmp_path / "out/clinical/train-00000-of-00001.parquet", columns=["age", "sex"]).to_pylist()
    assert t == [{"age": 50, "sex": "female"}, {"age": 45, "sex": "male"}, {"age": None, "sex": None}]


def test_module_never_imports_torch_or_skinvl() -> None:
    # every module of the package, not just what the builder happens to import
    modules = sorted(f"mm_skin.{p.stem}" for p in (REPO / "mm_skin").glob("*.py") if p.stem != "__init__")
    code = (
        "import importlib, sys, mm_skin, mm_skin_dataset; mm_skin_dataset.make_parser()\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print('torch' in sys.modules, 'skinvl' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.stdout.split() == ["False", "False"], proc.stderr[-2000:]
    assert "mm_skin.build" in modules and "mm_skin.schema" in modules


def test_docstring_examples_run() -> None:
    import doctest
    import importlib

    attempted = {}
    for name in ("schema", "report", "demographics", "release", "images", "tables", "messages", "parquet", "build", "card",
                 "paths"):
        result = doctest.testmod(importlib.import_module(f"mm_skin.{name}"), optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, name
        attempted[name] = result.attempted
    assert all(attempted[n] >= 1 for n in ("schema", "demographics", "images", "messages", "parquet", "card", "paths")), attempted


def test_cli_version_help_and_bad_shard_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import mm_skin

    with pytest.raises(SystemExit) as exit_info:
        mm.main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"mm-skin {mm_skin.__version__}"
    with pytest.raises(SystemExit):
        mm.main(["build", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for flag in ("--out", "--test-csv", "--instruct-json JSON [JSON ...]", "--modality-map VALUE=MODALITY [VALUE=MODALITY ...]",
                 "--strict", "--overwrite", "--num-proc", "--max-shard-size"):
        assert flag in help_text, flag
    assert "(default: mm-skin)" in help_text and "(default: 500MB)" in help_text and "(default: None)" not in help_text
    assert mm.main(["build", str(make_release(tmp_path / "rel")), "--out", str(tmp_path / "out"),
                    "--max-shard-size", "lots"]) == ExitCode.BAD_INPUT
    assert "--max-shard-size: cannot parse size 'lots'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["rel"]


def test_test_csv_is_found_by_its_official_name_or_as_the_only_candidate(tmp_path: Path) -> None:
    vqa = tmp_path / "Dataframe/test/vqa"
    vqa.mkdir(parents=True)
    assert find_test_csv([tmp_path]) is None
    (vqa / "a_test.csv").write_text("image,question,answer\n")
    assert find_test_csv([tmp_path]) == vqa / "a_test.csv"
    (vqa / "b_test.csv").write_text("image,question,answer\n")
    with pytest.raises(mm.ReleaseError, match="several test CSVs .* --test-csv"):
        find_test_csv([tmp_path])
    (vqa / "MM-Skin_test.csv").write_text("image,question,answer\n")
    assert find_test_csv([tmp_path]) == vqa / "MM-Skin_test.csv"


# --------------------------------------------------------------------------------------------
# Issue 13: question ids, answer types and image_in_test in `vqa`
# --------------------------------------------------------------------------------------------


def test_vqa_question_ids_are_unique_and_stable(sample_out: Path, tmp_path: Path, cache_dir: str) -> None:
    ds = datasets.load_dataset(str(sample_out), "vqa", cache_dir=cache_dir).remove_columns("image")
    ids = list(ds["train"]["question_id"]) + list(ds["test"]["question_id"])
    assert len(set(ids)) == len(ids) == len(ds["train"]) + len(ds["test"])
    assert all(re.fullmatch(r"(VQA|MM-Skin-sample_test)-\d+-[0-9a-f]{8}", i) for i in ids), ids[:3]
    copy = tmp_path / "elsewhere" / "release"
    shutil.copytree(SAMPLE, copy)  # the same release in another place, rebuilt
    mm.build(copy, tmp_path / "again")
    again = datasets.load_dataset(str(tmp_path / "again"), "vqa", cache_dir=str(tmp_path / "c")).remove_columns("image")
    assert list(again["train"]["question_id"]) + list(again["test"]["question_id"]) == ids


def test_vqa_answer_type_and_image_in_test(tmp_path: Path) -> None:
    vqa = [["dataset/bk1_1_1.png", "Is the lesion benign?", "Yes, a naevus."],
           ["dataset/bk1_1_1.png", "Is it a naevus or a melanoma?", "A naevus."],
           ["dataset/bk3_2_1.png", "Does it itch?", "no"],
           ["dataset/bk3_2_1.png", "What is shown?", "No lesion is visible."],
           ["dataset/bk15_4.png", "Where?", "The leg."]]
    src = make_release(tmp_path / "rel", vqa=vqa, test=[["dataset/bk3_2_1.png", "Does it itch?", "no"]])
    mm.build(src, tmp_path / "out")
    ds = datasets.load_dataset(str(tmp_path / "out"), "vqa", cache_dir=str(tmp_path / "c")).remove_columns("image")
    train = ds["train"].to_list()
    assert {r["question"]: (r["answer_type"], r["image_in_test"]) for r in train} == {
        "Is the lesion benign?": ("closed", False), "Is it a naevus or a melanoma?": ("open", False),
        "What is shown?": ("open", True), "Where?": ("open", False)}
    test = ds["test"].to_list()
    assert [(r["answer_type"], r["image_in_test"]) for r in test] == [("closed", True)]
    assert test[0]["question_id"].startswith("MM-Skin_test-2-")
    leak_free = ds["train"].filter(lambda row: not row["image_in_test"])
    assert not set(leak_free["image_id"]) & set(ds["test"]["image_id"]) and len(leak_free) == 3


# --------------------------------------------------------------------------------------------
# Issue 13: `mm-skin build --audit` puts the audit's summary on the card
# --------------------------------------------------------------------------------------------


def test_build_with_audit_puts_the_real_audit_on_the_card(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from huggingface_hub import DatasetCard

    from mm_skin.audit_report import render_card_section
    from mm_skin.hub import validate_folder

    out = tmp_path / "mm-skin"
    assert mm.main(["build", str(SAMPLE), "--out", str(out), "--num-proc", "1", "--audit"]) == ExitCode.OK
    audit_dir = tmp_path / "mm-skin.audit"  # the documented default: beside OUT, never inside it
    assert "see " + str(audit_dir / "audit.md") in capsys.readouterr().err
    assert sorted(p.name for p in audit_dir.iterdir()) == ["audit.json", "audit.md", "near_duplicates.png"]
    assert not {"audit.json", "audit.md", "near_duplicates.png"} & {p.name for p in out.rglob("*")}
    report = json.loads((audit_dir / "audit.json").read_text())
    assert report["dataset"] == str(out)  # the folder it became, not the temporary one it audited
    card = DatasetCard.load(out / "README.md")
    assert [c["config_name"] for c in card.data.to_dict()["configs"] if c.get("default")] == ["vqa"]
    # the section on the card is the one rendered from audit.json's summary, numbers and all
    assert render_card_section(report["summary"], "mm-skin").strip() in card.text
    images = report["summary"]["splits"]["test vs train"]["images"]
    assert images["test"] == 11 and images["same_image_id"] == 10  # the sample's 10 shared test images
    assert f"| {images['test']} | {images['same_image_id']} | {images['exact_twin']} | {images['near_twin']} | " \
           f"{images['any_twin']} |" in card.text
    assert "not audited" not in card.text and 'filter(lambda row: not row["image_in_test"])' in card.text
    assert validate_folder(out) == report_of(out)["written"]
    # `mm-skin audit` on the built folder, as a user runs it, finds the same
    proc = subprocess.run([sys.executable, "-m", "mm_skin_dataset", "audit", str(out), "--out", str(tmp_path / "again")],
                          cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    again = json.loads((tmp_path / "again" / "audit.json").read_text())
    assert again["summary"] == report["summary"] and again["image_pairs"] == report["image_pairs"]


def test_card_without_audit_says_so_and_names_the_command(sample_out: Path) -> None:
    body = (sample_out / "README.md").read_text()
    section = body.split("## Duplicates and overlap", 1)[1].split("\n## ", 1)[0]
    assert "This build was not audited" in section and "mm-skin audit FOLDER_OR_REPO_ID --out audit" in section
    assert "mm-skin build RELEASE --out mm-skin --audit" in section and "image_in_test" in section
    assert not (sample_out.parent / "mm-skin.audit").exists()


def test_audit_out_is_refused_inside_out_or_the_release_or_without_audit(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = make_release(tmp_path / "rel")
    (tmp_path / "file").write_text("x")
    cases = [(["--audit", "--audit-out", str(tmp_path / "out" / "audit")], "inside --out"),
             (["--audit", "--audit-out", str(src / "audit")], "inside the release"),
             (["--audit", "--audit-out", str(tmp_path / "file")], "a file is there"),
             (["--audit-out", str(tmp_path / "a")], "given without --audit")]
    for flags, message in cases:
        assert mm.main(["build", str(src), "--out", str(tmp_path / "out"), *flags]) == ExitCode.BAD_INPUT
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "rel"]
    assert mm.main(["build", str(src), "--out", str(tmp_path / "out"), "--num-proc", "1", "--audit",
                    "--audit-out", str(tmp_path / "reports")]) == ExitCode.OK
    assert (tmp_path / "reports" / "audit.json").is_file() and not (tmp_path / "out.audit").exists()
    assert "## Duplicates and overlap" in (tmp_path / "out" / "README.md").read_text()


def test_card_data_files_outside_the_folder_are_refused_by_push_and_audit(sample_out: Path, tmp_path: Path) -> None:
    from mm_skin.audit import AuditOptions, run_audit_command

    folder = tmp_path / "copy"
    shutil.copytree(sample_out, folder)
    shutil.copy(sorted((folder / "vqa").glob("test-*.parquet"))[0], tmp_path / "secret.parquet")  # a valid shard
    readme = folder / "README.md"
    text = readme.read_text()
    shard = re.search(r"vqa/test-[^\s]+\.parquet", text).group(0)
    for outside in ("../secret.parquet", str(tmp_path / "secret.parquet")):
        readme.write_text(text.replace(shard, outside, 1))
        with pytest.raises(mm.PushError, match=r"names .*secret\.parquet.*(absolute path|'\.\.' in the path)"):
            mm.validate_folder(folder)
        assert run_audit_command(AuditOptions(dataset=str(folder), out=str(tmp_path / "a"))) == ExitCode.BAD_INPUT
