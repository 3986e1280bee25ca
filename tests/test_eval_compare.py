"""``skinvl eval compare``: leaderboard, paired bootstrap CIs, refusal of runs that are not comparable."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from test_eval_foreign import _label_files, model_answers, write_lmms_eval_log, zeroshot_run

from skinvl.cli import main


@pytest.fixture(scope="module")
def runs(vqa_folder, tmp_path_factory) -> dict[str, Path]:
    """Scored run folders on the sample split: a baseline, an exact model, a copy, a subset, a paper-only run."""
    import datasets

    ds = datasets.load_dataset(str(vqa_folder), "vqa", split="test")
    rows = [ds[i] for i in range(len(ds))]
    root = tmp_path_factory.mktemp("runs")
    folders = {}
    specs = {"base": ("short", None, []), "exact": ("exact", None, []), "copy": ("short", None, []),
             "subset": ("short", {0, 1, 2, 3, 4, 5}, ["--allow-partial"]),
             "paper-only": ("short", None, ["--protocol", "paper"])}
    for name, (style, keep, extra) in specs.items():
        log = write_lmms_eval_log(root / f"{name}_samples_mmskin_vqa.jsonl", rows, model_answers(rows, style), keep)
        folders[name] = root / name
        assert main(["eval", "score", "--predictions", str(log), "--data", str(vqa_folder), "--out", str(folders[name]),
                     "--no-bertscore", "--name", name, *extra]) == 0
    return folders


def _compare(out: Path, *folders: Path, extra: tuple[str, ...] = ()) -> tuple[int, dict | None]:
    code = main(["eval", "compare", *map(str, folders), "--out", str(out), "--resamples", "300", *extra])
    return code, (json.loads((out / "results.json").read_text()) if code == 0 else None)


def test_leaderboard_and_paired_intervals(runs, tmp_path):
    code, doc = _compare(tmp_path / "c", runs["base"], runs["exact"], runs["copy"], extra=("--name", "MM-Skin VQA"))
    assert code == 0 and doc["baseline"] == "base" and doc["name"] == "MM-Skin VQA"
    base, exact = (json.loads((runs[n] / "results.json").read_text()) for n in ("base", "exact"))
    for protocol in ("paper", "standard"):
        board = doc["leaderboard"][protocol]
        assert board["overall"]["exact"]["rouge_l"] == exact["metrics"][protocol]["rouge_l"]
        assert set(board) == {"overall", "clinical", "dermoscopic", "pathology"}
        diffs = doc["differences"][protocol]
        # The recomputed metrics (corpus BLEU included) reproduce the scorer's numbers exactly.
        for metric, value in diffs["exact"].items():
            assert value["delta"] == pytest.approx(exact["metrics"][protocol][metric] - base["metrics"][protocol][metric]), metric
        assert all(v["delta"] == 0 and v["ci_low"] == v["ci_high"] == 0 and not v["real"] for v in diffs["copy"].values())
    recall = doc["differences"]["paper"]["exact"]["token_recall"]
    # The interval excludes 0, but 12 shared rows are too few to call any difference real.
    assert recall["ci_low"] > 0 and recall["too_few"] and not recall["real"]
    assert "(too few)" in (tmp_path / "c" / "results.md").read_text()
    assert set(doc["differences"]["standard"]["exact"]) >= {"sacrebleu", "rouge_l", "yes_no_accuracy"}
    assert doc["bootstrap"]["resamples"] == 300 and doc["bootstrap"]["rows"] == 12
    assert "nltk" in doc["bootstrap"]["methods"]["paper"]["bleu_4"]
    text = (tmp_path / "c" / "results.md").read_text()
    assert text.startswith("# MM-Skin VQA") and "Difference from base" in text and "paired bootstrap 95% CI" in text
    assert (tmp_path / "c" / "compare.png").read_bytes()[:4] == b"\x89PNG"
    # The same seed gives the same intervals.
    again = _compare(tmp_path / "again", runs["base"], runs["exact"], runs["copy"], extra=("--name", "MM-Skin VQA"))[1]
    assert again["differences"] == doc["differences"]


@pytest.mark.parametrize(("other", "named"), [("subset", "rows differ"), ("paper-only", "protocol")])
def test_runs_that_differ_are_refused_unless_allowed(runs, tmp_path, capsys, other, named):
    code, _ = _compare(tmp_path / "c", runs["base"], runs[other])
    err = capsys.readouterr().err.strip()
    assert code == 2 and named in err and "--allow-mismatch" in err and "\n" not in err
    code, doc = _compare(tmp_path / "c", runs["base"], runs[other], extra=("--allow-mismatch",))
    assert code == 0 and any(named in m for m in doc["mismatches"])
    assert doc["bootstrap"]["rows"] == (6 if other == "subset" else 12)
    assert "Compared despite differences" in (tmp_path / "c" / "results.md").read_text()


def test_zeroshot_runs_compare_on_accuracy_and_macro_f1(tmp_path):
    csv_path, images = _label_files(tmp_path)
    weak = zeroshot_run(tmp_path, csv_path, images, "weak", good=3)
    strong = zeroshot_run(tmp_path, csv_path, images, "strong", good=9)
    code, doc = _compare(tmp_path / "c", tmp_path / "weak", tmp_path / "strong")
    assert code == 0 and doc["compared_task"] == "zero-shot-classification"
    robust = doc["differences"]["robust"]["strong"]
    assert robust["accuracy"]["delta"] == pytest.approx(strong["metrics"]["accuracy"] - weak["metrics"]["accuracy"])
    assert robust["macro_f1"]["delta"] == pytest.approx(strong["metrics"]["macro_f1"] - weak["metrics"]["macro_f1"])
    assert doc["differences"]["paper"]["strong"]["accuracy"]["delta"] == 0  # the paper's parser cannot tell them apart
    assert robust["accuracy"]["test"] == "exact McNemar" and robust["accuracy"]["other_only"] == 6


def test_bad_run_folders_are_one_line_errors(runs, tmp_path, capsys):
    assert _compare(tmp_path / "c", runs["base"], tmp_path / "nothing")[0] == 2
    assert "no results.json" in capsys.readouterr().err


def test_statistics_reproduce_the_libraries():
    import sacrebleu
    from nltk.translate.bleu_score import corpus_bleu
    from sklearn.metrics import f1_score

    from skinvl.evaluation import bootstrap

    rng = random.Random(0)
    words = "yes no the lesion is a nevus melanoma benign red raised scaly".split()
    refs = [" ".join(rng.choices(words, k=rng.randint(1, 9))) for _ in range(200)]
    preds = [" ".join(rng.choices(words, k=rng.randint(0, 9))) for _ in range(200)]
    statistics = bootstrap.nltk_bleu_statistics(preds, refs, bootstrap.PAPER_BLEU)
    for name, weights in bootstrap.PAPER_BLEU.items():
        expected = corpus_bleu([[r.split()] for r in refs], [p.split() for p in preds], weights=weights)
        assert bootstrap.observed(statistics[name]) == pytest.approx(expected, rel=1e-12), name
    assert bootstrap.observed(bootstrap.sacrebleu_statistic(preds, refs)) == pytest.approx(
        sacrebleu.corpus_bleu(preds, [refs]).score / 100, rel=1e-12)
    classes = ["a", "b", "c"]
    truth = rng.choices(classes, k=100)
    guess = [t if rng.random() < 0.6 else rng.choice([*classes, None]) for t in truth]
    expected = f1_score(truth, [g or "<none>" for g in guess], labels=classes, average="macro", zero_division=0)
    assert bootstrap.observed(bootstrap.macro_f1_statistic(truth, guess, classes)) == pytest.approx(expected)
    # Each resample draws n rows; the draws depend only on the seed.
    blocks = list(bootstrap.resample_blocks(50, 120, seed=3, block=50))
    assert [b.shape for b in blocks] == [(50, 50), (50, 50), (20, 50)]
    assert all((b.sum(axis=1) == 50).all() for b in blocks)
    assert np.array_equal(np.vstack(blocks), np.vstack(list(bootstrap.resample_blocks(50, 120, seed=3, block=50))))


def test_compare_figure_legend_stays_off_the_bars_with_six_runs(tmp_path):
    """With 6 runs the legend lies outside every panel's axes and inside the saved figure."""
    from skinvl.evaluation import report
    from skinvl.evaluation.compare import _plot, compare_figure

    names = [f"run-{i}-a-long-descriptive-name" for i in range(6)]
    groups = ["overall", "clinical", "dermoscopy", "pathology"]
    board = {p: {g: {n: {"bleu_1": 0.9 - 0.1 * i} for i, n in enumerate(names)} for g in groups}
             for p in ("paper", "robust")}
    fig = compare_figure(board, "bleu_1")
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)  # lays the figure out as savefig does
    figure_box = fig.get_window_extent(renderer)
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == names
    box = legend.get_window_extent(renderer)
    assert len(fig.axes) == 2
    for ax in fig.axes:
        assert not box.overlaps(ax.get_window_extent(renderer)), (box, ax.get_window_extent(renderer))
    assert figure_box.x0 <= box.x0 and box.x1 <= figure_box.x1 and figure_box.y0 <= box.y0 and box.y1 <= figure_box.y1
    report.pyplot().close(fig)
    assert _plot(tmp_path, board, "bleu_1").read_bytes()[:4] == b"\x89PNG"
