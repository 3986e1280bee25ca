"""mm-skin audit: planted near-duplicates, exact duplicates, text duplicates, the split summary."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image
from planted_images import COPY_KINDS, planted_copy, png_bytes, textured_image

from mm_skin import audit_sources
from mm_skin.audit import AuditOptions, audit, run_audit_command
from mm_skin.audit_report import render_card_section
from mm_skin.cli import ExitCode
from mm_skin.image_hashes import fingerprint, near_pairs, perceptual_distance
from mm_skin.qa_columns import answer_type, question_id
from mm_skin.text_duplicates import TextIndex, normalise_text

ORIGINALS = 40


def _size(i: int) -> tuple[int, int]:
    return 160 + (i * 37) % 120, 128 + (i * 53) % 100


@pytest.fixture(scope="module")
def planted():
    """Fingerprints of 40 distinct textures and of one copy of each kind of each."""
    originals = [textured_image(i, _size(i)) for i in range(ORIGINALS)]
    hashes = [fingerprint(png_bytes(image)).perceptual for image in originals]
    copies = {kind: [fingerprint(png_bytes(planted_copy(image, kind, 1000 + i))).perceptual
                     for i, image in enumerate(originals)] for kind in COPY_KINDS}
    return hashes, copies


def test_planted_copies_are_found_and_distinct_originals_never_pair(planted):
    hashes, copies = planted
    assert near_pairs(np.stack(hashes)) == {}, "distinct originals must never pair"
    lines = []
    for kind, copied in copies.items():
        found = near_pairs(np.stack(hashes + copied))
        true = {(i, ORIGINALS + i) for i in range(ORIGINALS)}
        recall = len(true & found.keys()) / ORIGINALS
        # A false pair: anything but an original with its own copy (copies of two different
        # originals pairing up count too).
        false = {pair for pair in found if pair not in true}
        lines.append(f"{kind:20s} recall {recall:.0%}  false pairs {len(false)} of "
                     f"{(2 * ORIGINALS) * (2 * ORIGINALS - 1) // 2 - ORIGINALS}  max distance of a "
                     f"copy {max(perceptual_distance(hashes[i], copied[i]) for i in range(ORIGINALS))}")
        assert recall >= 0.95, lines[-1]
        assert not false, lines[-1]
    print("\n" + "\n".join(lines))


def test_fingerprint_separates_bytes_from_pixels():
    image = textured_image(1)
    fast, small = io.BytesIO(), io.BytesIO()
    image.save(fast, "PNG", compress_level=0)
    image.save(small, "PNG", compress_level=9)
    a, b = fingerprint(fast.getvalue()), fingerprint(small.getvalue())
    assert a.sha256 != b.sha256 and a.pixels == b.pixels
    assert fingerprint(png_bytes(textured_image(2))).pixels != a.pixels
    grey = image.convert("L")
    assert fingerprint(png_bytes(grey)).pixels == fingerprint(png_bytes(grey.convert("RGB"))).pixels


def _write_split(folder: Path, config: str, split: str, rows: list[dict]) -> str:
    features = datasets.Features({"image": datasets.Image(), "image_id": datasets.Value("string"),
                                  **{k: datasets.Value("string") for k in rows[0] if k not in ("image", "image_id")}})
    path = f"{config}/{split}-00000-of-00001.parquet"
    (folder / config).mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_list(rows, features=features).to_parquet(str(folder / path))
    return path


def _write_folder(folder: Path, splits: dict[tuple[str, str], list[dict]]) -> Path:
    """A folder laid out as `mm-skin build` writes one: Parquet per config/split + README configs."""
    configs: dict[str, list[str]] = {}
    for (config, split), rows in splits.items():
        path = _write_split(folder, config, split, rows)
        configs.setdefault(config, []).append(f"  - split: {split}\n    path:\n    - {path}")
    yaml = "\n".join(f"- config_name: {name}\n  data_files:\n" + "\n".join(entries)
                     for name, entries in configs.items())
    (folder / "README.md").write_text(f"---\nconfigs:\n{yaml}\n---\n# test\n", encoding="utf-8")
    return folder


def _image(data: bytes) -> dict:
    return {"bytes": data, "path": None}


@pytest.fixture(scope="module")
def planted_folder(tmp_path_factory):
    """train: 8 distinct images; test: a byte copy, a pixel copy, a near copy, the same id, a new one."""
    root = tmp_path_factory.mktemp("built")
    images = [textured_image(100 + i, _size(i)) for i in range(10)]
    data = [png_bytes(image) for image in images]
    reencoded = io.BytesIO()
    images[1].save(reencoded, "PNG", compress_level=9)
    near = io.BytesIO()
    planted_copy(images[2], "resize+colour+JPEG", 7).save(near, "JPEG", quality=85)

    def qa(image_id: str, image: bytes, question: str, answer: str) -> dict:
        return {"image": _image(image), "image_id": image_id, "question": question, "answer": answer}

    train = [qa(f"bk1_{i}", data[i], f"Question {i} about the lesion's colour and shape?", f"Answer {i}.")
             for i in range(8)]
    train.append(qa("bk1_0", data[0], "Is the lesion benign?", "Yes, a compound naevus."))
    test = [qa("bk2_a", data[0], "Where is it found?", "On the nasal ala."),
            qa("bk2_b", reencoded.getvalue(), "What is shown?", "A plaque."),
            qa("bk2_c", near.getvalue(), "What colour is it?", "Brown."),
            qa("bk1_3", data[3], "Is the lesion benign ?", "yes, a compound naevus"),
            qa("bk2_e", data[9], "Question 4 about the lesion's colour and shape", "Answer 4")]
    texts = ["A pearly telangiectatic papule on the nasal ala of a 62-year-old man: nodular basal cell carcinoma.",
             "Symmetric brown globules and a regular pigment network in a compound naevus.",
             "Psoriasis: well-demarcated erythematous plaques with silvery scale on the knees.",
             "A pearly telangiectatic papule on the nasal ala of a 64-year-old man: nodular basal cell carcinoma."]
    captions = [{"image": _image(data[i]), "image_id": f"bk1_{i}", "caption": text}
                for i, text in zip((0, 1, 2, 8), texts, strict=True)]
    return _write_folder(root, {("vqa", "train"): train, ("vqa", "test"): test,
                                ("clinical", "train"): captions}), data


def _pairs_by_ids(report: dict) -> dict[frozenset, dict]:
    return {frozenset((p["a"]["image_id"], p["b"]["image_id"])): p for p in report["image_pairs"]}


def test_audit_finds_exact_pixel_and_near_twins_and_summarises_test_vs_train(planted_folder, tmp_path):
    folder, _ = planted_folder
    report = audit(folder, out=tmp_path / "out", progress=False)
    pairs = _pairs_by_ids(report)
    assert pairs[frozenset({"bk1_0", "bk2_a"})]["match"] == "bytes"
    assert pairs[frozenset({"bk1_1", "bk2_b"})]["match"] == "pixels"
    near = pairs[frozenset({"bk1_2", "bk2_c"})]
    assert near["kind"] == "near" and 0 < near["distance"] <= report["thresholds"]["image_near_max_distance"]
    assert near["a"]["in"] == ["clinical/train", "vqa/train"] and near["b"]["in"] == ["vqa/test"]
    assert len(pairs) == 3, pairs.keys()
    summary = report["summary"]["splits"]["test vs train"]
    assert summary["images"] == {"test": 5, "same_image_id": 1, "exact_twin": 2, "near_twin": 1, "any_twin": 4}
    assert summary["qa_pairs"] == {"test": 5, "image_in_train": 4, "same_question_on_same_or_twin_image": 0,
                                   "same_qa_text": 2, "near_qa_text": 0}
    assert summary["test_image_ids_in_train"] == ["bk1_3", "bk2_a", "bk2_b", "bk2_c"]
    groups = {g["text"]: g["where"] for g in report["texts"]["qa"]["exact_groups"]}
    assert groups["is the lesion benign yes a compound naevus"] == ["vqa/train#8", "vqa/test#3"]
    captions = report["texts"]["caption"]["near_pairs"]
    assert [(p["a"][:40], p["rows_a"], p["rows_b"]) for p in captions] == [
        ("a pearly telangiectatic papule on the na", 1, 1)]
    out = tmp_path / "out"
    assert json.loads((out / "audit.json").read_text())["image_pairs"] == report["image_pairs"]
    markdown = (out / "audit.md").read_text()
    assert "## Duplicates and overlap" in markdown and "`bk2_c` (vqa/test)" in markdown
    with Image.open(out / "near_duplicates.png") as sheet:
        assert sheet.width == 2 * 240 + 24 and sheet.height > 240


def test_clean_data_gives_no_pairs(tmp_path):
    rows = [{"image": _image(png_bytes(textured_image(300 + i, _size(i)))), "image_id": f"bk3_{i}",
             "caption": f"caption number {i} " + "xyz" * i} for i in range(12)]
    folder = _write_folder(tmp_path / "clean", {("clinical", "train"): rows[:8], ("clinical", "test"): rows[8:]})
    report = audit(folder, out=tmp_path / "out", progress=False)
    assert report["image_pairs"] == [] and report["errors"] == []
    assert report["summary"]["splits"]["test vs train"]["images"]["any_twin"] == 0
    assert report["texts"]["caption"] == {"exact_groups": [], "near_pairs": []}
    with Image.open(tmp_path / "out" / "near_duplicates.png") as sheet:
        assert sheet.height < 100  # says "no near-duplicate image pairs"


def test_against_folder_twins_regular_files_only_and_parallel_hashing(planted_folder, tmp_path):
    folder, data = planted_folder
    public = tmp_path / "public_test"
    (public / "sub").mkdir(parents=True)
    (public / "sub" / "isic_1.png").write_bytes(data[4])
    (public / "isic_2.jpg").write_bytes(png_bytes(textured_image(999)))
    (public / "notes.txt").write_text("not an image")
    (public / "link.png").symlink_to(folder / "README.md")
    serial = audit(folder, against=[public], out=tmp_path / "a", progress=False)
    parallel = audit(folder, against=[public], out=tmp_path / "b", num_proc=2, progress=False)
    assert parallel["image_pairs"] == serial["image_pairs"]
    twin = _pairs_by_ids(serial)[frozenset({"bk1_4", "sub/isic_1.png"})]
    assert twin["match"] == "bytes" and twin["b"]["in"] == ["against:public_test"]
    against = serial["summary"]["against"]["public_test"]
    assert against["images"] == 2 and against["twin_in_split"]["train"] == {"exact": 1, "near": 0}
    assert against["skipped"] == {"not an image file name": 1, "symbolic link (not followed)": 1}


def test_hub_style_streaming_reads_the_same_rows(planted_folder):
    folder, _ = planted_folder
    local = list(audit_sources.iter_folder(audit_sources.folder_splits(folder)))
    configs = audit_sources.hub_configs(str(folder))
    streamed = list(audit_sources.iter_hub(str(folder), configs))  # datasets' streaming loader, images undecoded
    key = lambda row: (row.config, row.split, row.row)  # noqa: E731
    assert sorted(map(key, streamed)) == sorted(map(key, local))
    by_key = {key(row): row for row in local}
    assert all(row.images == by_key[key(row)].images and row.qa == by_key[key(row)].qa for row in streamed)


def test_bad_input_is_one_line_with_exit_code_2(planted_folder, tmp_path, capsys):
    folder, _ = planted_folder
    escaping = tmp_path / "escaping"
    escaping.mkdir()
    (escaping / "README.md").write_text("---\nconfigs:\n- config_name: vqa\n  data_files:\n"
                                        "  - split: train\n    path: ../../etc/passwd\n---\n")
    (tmp_path / "file").write_text("x")
    cases = [(AuditOptions(dataset=str(tmp_path / "missing")), "no such folder"),
             (AuditOptions(dataset=str(tmp_path)), "no README.md"),
             (AuditOptions(dataset=str(escaping)), "outside the folder"),
             (AuditOptions(dataset=str(folder), against=[str(tmp_path / "file")]), "not a folder"),
             (AuditOptions(dataset=str(folder), out=str(tmp_path / "file")), "a file is there"),
             (AuditOptions(dataset=str(folder), num_proc=0), "--num-proc 0"),
             (AuditOptions(dataset="someone/not-reachable-offline"), "could not read it from the Hub")]
    for options, message in cases:
        assert run_audit_command(options) == ExitCode.BAD_INPUT
        error = capsys.readouterr().err.strip().splitlines()
        assert len(error) == 1 and message in error[0], error


def test_text_duplicates_normalise_and_near_pairs():
    index = TextIndex("question")
    for row, text in enumerate(["Is the lesion benign?", "is the lesion  BENIGN ?",
                                "What dermoscopic structures are visible in this lesion?",
                                "What dermoscopic structures are visible on this lesion?",
                                "Where is it?"]):
        index.add(text, row)
    assert index.exact_groups() == [("is the lesion benign", [0, 1])]
    near = index.near_pairs()
    assert [(a[-10:], b[-10:]) for a, b, _ in near] == [("this lesion", "this lesion")][:0] or len(near) == 1
    assert near[0][2] >= 0.7 and "where is it" not in (near[0][0], near[0][1])
    assert normalise_text("Ｗhat  IS\tit?") == "what is it"


@pytest.mark.parametrize(("question", "answer", "expected"), [
    ("Is the lesion benign?", "Yes.", "closed"),
    ("Does this show a naevus?", "No, it is a melanoma.", "closed"),
    ("  can it itch?", "yes", "closed"),
    ("Isn't it benign?", "No", "closed"),
    ("Is it a naevus or a melanoma?", "A melanoma.", "open"),
    ("What is the diagnosis?", "No lesion is visible.", "open"),
    ("Is the lesion benign?", "It is benign.", "open"),
    ("Island-shaped lesion: what is it?", "Yes", "open"),
    ("", "", "open"),
])
def test_answer_type_rules(question, answer, expected):
    assert answer_type(question, answer) == expected


def test_question_id_is_stable_and_tracks_content():
    first = question_id("/data/MM-SkinQA/VQA.csv", 7, "dataset/bk1_3_12.png", "Is it benign?")
    assert first == question_id("C:\\other\\VQA.csv", 7, "dataset/bk1_3_12.png", "Is it benign?")
    assert first.startswith("VQA-7-") and len(first) == len("VQA-7-") + 8
    assert first != question_id("VQA.csv", 8, "dataset/bk1_3_12.png", "Is it benign?")
    assert first != question_id("VQA.csv", 7, "dataset/bk1_3_12.png", "Is it malignant?")


def test_card_section_from_a_real_audit(planted_folder, tmp_path):
    folder, _ = planted_folder
    report = audit(folder, out=tmp_path / "out", progress=False)
    section = render_card_section(report["summary"], "me/mm-skin")
    assert section.startswith("## Duplicates and overlap")
    assert "| 5 | 1 | 2 | 1 | 4 |" in section  # test images, same id, exact, near, any
    assert 'load_dataset("me/mm-skin", "vqa", split="train")' in section and "image_in_test" in section
    # the train side of the twins: exact ones go into the filter, near ones are left to judge by eye
    assert report["summary"]["splits"]["test vs train"]["train_twins_of_test"] == {
        "exact": ["bk1_0", "bk1_1"], "near": ["bk1_2"]}
    snippet = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert 'exact_twins = {"bk1_0", "bk1_1"}' in snippet and 'row["image_id"] not in exact_twins' in snippet
    compile(snippet, "card snippet", "exec")
    assert "near twins of test images under another id: 1." in section and "near_duplicates.png" in section
    not_run = render_card_section(None, "me/mm-skin")
    assert "not audited" in not_run and "mm-skin audit" in not_run and "| 5 |" not in not_run


def test_audit_imports_no_torch_nor_scipy():
    # mm_skin_dataset imports mm_skin.audit for every `mm-skin` command: datasketch/scipy load on use
    code = ("import sys, mm_skin.audit; "
            "assert not any(m.split('.')[0] in ('torch', 'datasketch', 'scipy') for m in sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ})


def test_command_line_derived_from_audit_options(planted_folder, tmp_path, capsys):
    from mm_skin import cli

    folder, _ = planted_folder
    parser = cli.make_parser("mm-skin", "test", "0")
    cli.add_command(cli.add_subcommands(parser), "audit", AuditOptions, run_audit_command, "audit")
    code = cli.run_main(parser, ["audit", str(folder), "--out", str(tmp_path / "o"), "--num-proc", "1"])
    assert code == ExitCode.OK
    assert "2 exact and 1 near-duplicate image clusters (6 images), 0 label conflicts" in capsys.readouterr().out
    assert (tmp_path / "o" / "audit.json").is_file()


def test_card_section_leaves_a_long_list_of_exact_twins_to_audit_json():
    split = {"images": dict.fromkeys(("test", "same_image_id", "exact_twin", "near_twin", "any_twin"), 0),
             "qa_pairs": dict.fromkeys(("test", "image_in_train", "same_question_on_same_or_twin_image",
                                        "same_qa_text", "near_qa_text"), 0),
             "train_twins_of_test": {"exact": [f"bk1_{i}" for i in range(101)], "near": []}}
    section = render_card_section({"splits": {"test vs train": split}, "against": {}}, "me/mm-skin")
    assert "exact_twins =" not in section and "(same bytes or pixels): 101; drop them too" in section
    assert 'train.filter(lambda row: not row["image_in_test"])' in section
