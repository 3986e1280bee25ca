"""Benchmark judged scoring and the intervals (one run, prints numbers and ratios; no assertions on time).

1. Judge throughput: ``judge_items`` (the code ``skinvl eval judge`` runs) against the loopback judge
   server taking 200 ms per request, N distinct answers, --concurrency 8 against --concurrency 1 in
   the same run: requests/s and the ratio (the limit is 8x; target >= 6x).
2. Interval widths on the real test split's shape: the questions of the real test CSV grouped by
   image (5,452 questions over 4,391 images) with per-question scores in which the questions of one
   image are correlated (an image-level effect plus noise, as answers about one picture are); the
   95% interval width of a mean metric and of a yes/no-style accuracy, resampling rows (before)
   against resampling images (after, what ``eval compare`` now does), 1,000 resamples, seed 0.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/judge.py --test-csv PATH/Dataframe/test/vqa/MM-Skin_test.csv
        [--answers 160] [--delay 0.2] [--resamples 1000] [--skip-throughput]
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def throughput(answers: int, delay: float, concurrency: int) -> tuple[float, int]:
    """(requests/s, requests) of judging ``answers`` distinct answers against a ``delay``-second server."""
    sys.path.insert(0, str(REPO / "tests"))
    from judge_server import JudgeServer

    from skinvl.evaluation.endpoint import EndpointOptions
    from skinvl.evaluation.judge import Item, judge_items
    from skinvl.evaluation.judge_rubrics import load_rubric
    from skinvl.evaluation.judges import EndpointJudge, VerdictCache

    items = [Item({"question": f"Is lesion {k} raised?", "answer": "Yes, it is raised."}, f"Yes {k}.")
             for k in range(answers)]
    with JudgeServer(delay=delay) as server, tempfile.TemporaryDirectory() as tmp:
        judge = EndpointJudge(EndpointOptions(endpoint=server.url, model_name="judge", concurrency=concurrency,
                                              retry_backoff=0), max_tokens=64)
        start = time.perf_counter()
        verdicts = judge_items(judge, load_rubric("binary"), items, VerdictCache(Path(tmp) / "cache.jsonl"))
        seconds = time.perf_counter() - start
        judge.close()
        assert all(v["status"] == "judged" for v in verdicts)
        return len(server.requests) / seconds, len(server.requests)


def real_shape(path: Path) -> list[str]:
    """The image of each question of the real test CSV (its ``image`` column), in file order."""
    with path.open(newline="", encoding="utf-8") as f:
        return [row["image"] for row in csv.DictReader(f)]


def widths(images: list[str], resamples: int, image_sd: float = 0.15) -> dict[str, dict[str, float]]:
    """95% interval widths (x100) of two metrics, resampling rows vs images; ``image_sd`` is the spread of the
    per-image effect shared by the questions of one image (0: independent questions)."""
    import numpy as np

    from skinvl.evaluation import bootstrap

    rng = np.random.default_rng(0)
    clusters, unit = bootstrap.cluster_index(images)
    assert unit == "image"
    image_effect = rng.normal(0, image_sd, clusters.max() + 1)[clusters]  # what one picture makes easy or hard
    score = np.clip(0.35 + image_effect + rng.normal(0, 0.15, len(images)), 0, 1)  # a ROUGE-L-like mean metric
    correct = (rng.random(len(images)) < 0.6 + image_effect).astype(float)  # a judged-correct / yes-no outcome
    stats = {"mean metric (ROUGE-L-like)": bootstrap.mean_statistic(score),
             "binary accuracy (judge-like)": bootstrap.mean_statistic(correct)}
    out: dict[str, dict[str, float]] = {}
    for name, resampling in (("rows", bootstrap.Resampling(resamples, 0)),
                             ("images", bootstrap.Resampling(resamples, 0, clusters=clusters))):
        for metric, cell in bootstrap.intervals(stats, len(images), resampling).items():
            out.setdefault(metric, {})[name] = 100 * (cell["ci_high"] - cell["ci_low"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--test-csv", type=Path, help="the real MM-Skin_test.csv (image, question, answer)")
    parser.add_argument("--answers", type=int, default=160)
    parser.add_argument("--delay", type=float, default=0.2)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    if not args.skip_throughput:
        one, n1 = throughput(args.answers // 4, args.delay, 1)
        eight, n8 = throughput(args.answers, args.delay, 8)
        print(f"judge throughput ({args.delay * 1000:.0f} ms server): concurrency 1 {one:.2f} req/s ({n1} requests), "
              f"concurrency 8 {eight:.2f} req/s ({n8} requests): {eight / one:.2f}x (limit 8x; target >= 6x)")
    if args.test_csv:
        images = real_shape(args.test_csv)
        from collections import Counter

        sizes = Counter(images).values()
        print(f"real test split shape: {len(images)} questions over {len(sizes)} images; design effect if the "
              f"questions of an image were fully correlated: {sum(m * m for m in sizes) / len(images):.3f} "
              f"(widths x{(sum(m * m for m in sizes) / len(images)) ** 0.5:.3f})")
        for image_sd in (0.15, 0.0):
            for metric, width in widths(images, args.resamples, image_sd).items():
                print(f"image effect SD {image_sd}: 95% interval width of {metric}: rows {width['rows']:.2f} points, "
                      f"images {width['images']:.2f} points ({width['images'] / width['rows']:.2f}x)")


if __name__ == "__main__":
    main()
