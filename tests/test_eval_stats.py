"""Honest statistics: image-resampled intervals on every cell, exact McNemar + Holm, "too few", yes/no F1."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from skinvl.cli import main
from skinvl.evaluation import bootstrap


def _run(tmp_path: Path, name: str, right: int, n_images: int = 40) -> Path:
    """A scored run of 2 questions per image: a yes/no one (the first ``right`` images answered right) and an open one."""
    path = tmp_path / f"{name}.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "image_id", "modality", "question", "answer", "prediction"])
        for k in range(n_images):
            reference = "Yes, it is raised." if k % 2 else "No, it is flat."
            guess = reference if k < right else ("No." if k % 2 else "Yes.")
            writer.writerow([f"q{k}a", f"img{k}", "clinical", "Is the lesion raised?", reference, guess])
            writer.writerow([f"q{k}b", f"img{k}", "clinical", "What is shown?", "A nevus on the arm.",
                             "A nevus on the arm." if k < right else "A scar."])
    assert main(["eval", "score", "--predictions", str(path), "--out", str(tmp_path / name), "--no-bertscore",
                 "--name", name]) == 0
    return tmp_path / name


def test_compare_resamples_images_tests_pairs_and_corrects(tmp_path):
    base, better, same = _run(tmp_path, "base", 20), _run(tmp_path, "better", 36), _run(tmp_path, "same", 20)
    assert main(["eval", "compare", str(base), str(better), str(same), "--out", str(tmp_path / "c"),
                 "--resamples", "400"]) == 0
    doc = json.loads((tmp_path / "c" / "results.json").read_text())
    boot = doc["bootstrap"]
    assert boot["unit"] == "image" and boot["clusters"] == 40 and boot["rows"] == 80
    # Every leaderboard cell with a recomputable metric has its interval around its value.
    cells = doc["intervals"]["standard"]["overall"]
    for run in ("base", "better", "same"):
        for metric, cell in cells[run].items():
            assert cell["ci_low"] <= cell["value"] <= cell["ci_high"], (run, metric)
            assert cell["value"] == pytest.approx(doc["leaderboard"]["standard"]["overall"][run][metric])
    yes_no = doc["differences"]["standard"]["better"]["yes_no_accuracy"]
    # Exact McNemar on the discordant pairs: 16 yes/no questions only "better" got right, none the other way.
    assert yes_no["test"] == "exact McNemar" and yes_no["other_only"] == 16 and yes_no["base_only"] == 0
    assert yes_no["p_value"] == pytest.approx(2 * 0.5**16) and yes_no["n"] == 40 and yes_no["real"]
    p_values = {m: v["p_value"] for m, v in doc["differences"]["standard"]["better"].items()}
    p_values |= {("paper", m): v["p_value"] for m, v in doc["differences"]["paper"]["better"].items()}
    assert yes_no["p_holm"] == pytest.approx(min(1.0, len(p_values) * yes_no["p_value"]))  # the smallest p
    assert not any(v["real"] for v in doc["differences"]["standard"]["same"].values())
    text = (tmp_path / "c" / "results.md").read_text()
    assert "Smallest detectable difference" in text and "40 images behind the 80 shared rows" in text
    assert " [" in text.split("## Protocol `standard`: overall")[1].split("##")[0]  # intervals in the cells


def test_image_resampling_widens_intervals_of_correlated_questions():
    rng = np.random.default_rng(1)
    per_image = rng.random(500)
    values = np.repeat(per_image, 2)  # two questions per image, perfectly correlated
    stat = bootstrap.mean_statistic(values)
    rows = bootstrap.intervals({"m": stat}, 1000, bootstrap.Resampling(800, 0))["m"]
    clusters, unit = bootstrap.cluster_index([f"i{k // 2}" for k in range(1000)])
    images = bootstrap.intervals({"m": stat}, 1000, bootstrap.Resampling(800, 0, clusters=clusters))["m"]
    assert unit == "image" and images["se"] / rows["se"] == pytest.approx(math.sqrt(2), rel=0.15)
    assert bootstrap.cluster_index(["a", None])[1] == "row"
    # Each resample still holds n rows on average, and whole images.
    block = next(bootstrap.resample_blocks(1000, 50, 0, clusters=clusters))
    assert np.array_equal(block[:, 0::2], block[:, 1::2])


def test_image_resampling_does_not_inflate_independent_questions():
    # Images with 1 or 3 questions: a resample holds a varying number of rows, and a mean is sum / count.
    rng = np.random.default_rng(2)
    keys = [f"i{k}" for k in range(600) for _ in range(1 if k % 2 else 3)]
    stat = bootstrap.mean_statistic(rng.random(len(keys)))
    clusters, _ = bootstrap.cluster_index(keys)
    rows = bootstrap.intervals({"m": stat}, len(keys), bootstrap.Resampling(800, 0))["m"]
    images = bootstrap.intervals({"m": stat}, len(keys), bootstrap.Resampling(800, 0, clusters=clusters))["m"]
    assert images["se"] / rows["se"] == pytest.approx(1.0, abs=0.12)


def test_holm_and_mcnemar_match_their_definitions():
    from scipy.stats import binomtest

    adjusted = bootstrap.holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": math.nan})
    assert adjusted["a"] == (pytest.approx(0.03), True) and adjusted["c"] == (pytest.approx(0.06), False)
    assert adjusted["b"][0] == pytest.approx(0.06) and adjusted["d"][1] is False
    test = bootstrap.mcnemar_exact([True, True, False, False, True], [False, True, True, True, True])
    assert (test["base_only"], test["other_only"]) == (1, 2)
    assert test["p_value"] == pytest.approx(binomtest(2, 3, 0.5).pvalue)


def test_too_few_rows_are_never_a_real_difference(tmp_path):
    base, better = _run(tmp_path, "base", 0, n_images=6), _run(tmp_path, "better", 6, n_images=6)
    assert main(["eval", "compare", str(base), str(better), "--out", str(tmp_path / "c"), "--resamples", "100"]) == 0
    doc = json.loads((tmp_path / "c" / "results.json").read_text())
    for values in doc["differences"].values():
        assert all(v["too_few"] and not v["real"] for v in values["better"].values())


def test_yes_no_f1_over_the_classes_present(tmp_path):
    _run(tmp_path, "all", 40, n_images=40)
    doc = json.loads((tmp_path / "all" / "results.json").read_text())
    m = doc["metrics"]["standard"]
    assert m["yes_no_f1"] == 1.0 and m["yes_no_yes_support"] == 20 and m["yes_no_no_support"] == 20
    path = tmp_path / "only_yes.csv"
    path.write_text("question,answer,prediction\nIs it raised?,Yes.,Yes.\nIs it red?,Yes it is,yes\n")
    assert main(["eval", "score", "--predictions", str(path), "--out", str(tmp_path / "y"), "--no-bertscore"]) == 0
    m = json.loads((tmp_path / "y" / "results.json").read_text())["metrics"]["standard"]
    assert m["yes_no_f1"] == 1.0 and m["yes_no_no_support"] == 0  # not 50: the absent class is not averaged in


def test_a_difference_no_table_can_show_is_never_real():
    # Two random-weight models: corpus BLEU-4 of ~1e-155 vs ~3e-155; every resample agrees on the sign.
    base = {"bleu_4": bootstrap.mean_statistic([1e-155] * 200)}
    other = {"bleu_4": bootstrap.mean_statistic([3e-155] * 200)}
    value = bootstrap.paired_differences(base, {"other": other}, 200, resamples=200)["other"]["bleu_4"]
    assert value["ci_low"] > 0 and value["negligible"] and not value["real"]
    # a visible difference with the same certainty is real
    other = {"bleu_4": bootstrap.mean_statistic([0.01] * 200)}
    value = bootstrap.paired_differences(base, {"other": other}, 200, resamples=200)["other"]["bleu_4"]
    assert value["real"] and not value["negligible"]
