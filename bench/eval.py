"""Benchmark the evaluation path (one run, prints medians and ratios; no assertions on time).

1. Batched generation (batch 16) against a one-question-at-a-time loop, same tiny model, same
   inputs, greedy: the answers must be identical; target >= 5x faster.
2. The scorer on all 5,452 real MM-Skin test answers (../shared, predictions = the references
   shuffled) with the paper protocol, BERTScore aside: target < 30 s.
3. The endpoint client against a loopback server taking 200 ms per request, 256 questions,
   --concurrency 16 against --concurrency 1: target >= 12x the throughput (the limit is 16x).
4. Resume overhead: the predictions log (append + flush per batch, read back, merge) against the
   generation time of the same local run: target < 1 %.
5. ``eval compare``'s paired bootstrap on a synthetic 5,452-row split (the real test split's size;
   two models), per metric: building the per-row statistics, then 1,000 resamples (seed 0).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/eval.py [--samples 32] [--repeats 3] [--max-new-tokens 24] [--threads 1]
        [--endpoint-questions 256] [--endpoint-delay 0.2] [--skip-scorer] [--skip-endpoint]
        [--bootstrap-rows 5452] [--bootstrap-resamples 1000] [--bootstrap-only]
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import statistics
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]  # the package itself is installed (editable) by make install
TEST_CSV = Path(os.environ.get("MM_SKIN_SHARED", REPO.parent / "shared")) / "mmskin-release/Dataframe/test/vqa/MM-Skin_test.csv"


def _timed(fn, repeats: int):
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def bench_generation(samples: int, repeats: int, max_new_tokens: int, batch_size: int, threads: int = 1) -> float:
    import numpy as np
    import torch
    from PIL import Image

    import skinvl
    from skinvl.generate import answer_batch

    # One intra-op thread: the tiny model's matrices are far too small to split, and on a
    # shared 2-core machine extra threads only add contention noise (same for both loops).
    torch.set_num_threads(threads)
    model, processor = skinvl.load("skinvl-tiny")
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (32 + i % 7, 40, 3), dtype=np.uint8)) for i in range(samples)]
    if TEST_CSV.is_file():
        with TEST_CSV.open(newline="", encoding="utf-8") as f:
            questions = [r["question"] for _, r in zip(range(samples), csv.DictReader(f), strict=False)]
    else:
        questions = [f"What does image {i} show?" + " Describe it." * (i % 3) for i in range(samples)]
    kwargs = {"max_new_tokens": max_new_tokens, "do_sample": False, "num_beams": 1}
    answer_batch(model, processor, images[:2], questions[:2], batch_size=2, **kwargs)  # warm-up

    def one_at_a_time():
        return [answer_batch(model, processor, [im], [q], batch_size=1, **kwargs)[0] for im, q in zip(images, questions, strict=True)]

    def batched():
        return answer_batch(model, processor, images, questions, batch_size=batch_size, **kwargs)

    t_loop, loop_answers = _timed(one_at_a_time, repeats)
    t_batch, batch_answers = _timed(batched, repeats)
    same = loop_answers == batch_answers
    n_diff = sum(a != b for a, b in zip(loop_answers, batch_answers, strict=True))
    print(f"generation: {samples} questions, max_new_tokens={max_new_tokens}, torch threads={threads}, median of {repeats}")
    print(f"  one at a time : {t_loop:8.3f} s  ({samples / t_loop:6.1f} q/s)")
    print(f"  batch {batch_size:<8}: {t_batch:8.3f} s  ({samples / t_batch:6.1f} q/s)")
    print(f"  speed-up      : {t_loop / t_batch:8.2f}x   (target >= 5x)   identical greedy answers: {same}"
          + ("" if same else f" ({n_diff} differ)"))
    return t_loop / t_batch


def bench_scorer(repeats: int) -> float | None:
    from skinvl.evaluation.predictions import VQASample
    from skinvl.evaluation.scoring import ScoreSettings, score_vqa

    if not TEST_CSV.is_file():
        print(f"scorer: {TEST_CSV} is absent; skipped")
        return None
    with TEST_CSV.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    shuffled = [r["answer"] for r in rows]
    random.Random(0).shuffle(shuffled)
    samples = [VQASample(r["question"], r["answer"], p, None, r["image"]) for r, p in zip(rows, shuffled, strict=True)]
    settings = ScoreSettings(bertscore=False)
    warnings.simplefilter("ignore")  # nltk warns on every zero n-gram count
    seconds, result = _timed(lambda: score_vqa(samples, ["paper"], settings), repeats)
    meteor = "computed" if result.metrics["paper"]["overall"]["meteor"] is not None else "unavailable here (no WordNet), not timed"
    print(f"scorer: {len(samples)} real test answers, paper protocol, BERTScore aside, median of {repeats}")
    print(f"  time          : {seconds:8.2f} s   (target < 30 s; {30 / seconds:.1f}x under)   METEOR {meteor}")
    t_std, _ = _timed(lambda: score_vqa(samples, ["standard"], settings), 1)
    print(f"  standard protocol (for reference, 1 run): {t_std:.2f} s")
    return seconds


def bench_endpoint(questions: int, delay: float, concurrencies: tuple[int, ...] = (1, 16)) -> float:
    """Throughput of the endpoint client at each concurrency against a server with fixed latency."""
    import io

    import numpy as np
    from PIL import Image

    sys.path.insert(0, str(REPO / "tests"))
    from eval_servers import FaultServer

    from skinvl.evaluation.endpoint import EndpointAnswerer, EndpointOptions
    from skinvl.evaluation.runs import Row
    from skinvl.inference.images import LazyImages

    rng = np.random.default_rng(0)
    blobs = []
    for _ in range(questions):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (32, 40, 3), dtype=np.uint8)).save(buffer, "PNG")
        blobs.append(buffer.getvalue())
    images = LazyImages(blobs.__getitem__, questions)
    rows = [Row(f"q-{i}", i, f"What does image {i} show?") for i in range(questions)]
    seconds: dict[int, float] = {}
    with FaultServer(delay=delay) as server:
        for n in concurrencies:
            client = EndpointAnswerer(EndpointOptions(endpoint=server.url, model_name="bench", concurrency=n),
                                      {"max_tokens": 8, "temperature": 0.0})
            start = time.perf_counter()
            records = [r for batch in client.answer(rows, images) for r in batch]
            seconds[n] = time.perf_counter() - start
            client.close()
            assert all(r["status"] == "ok" for r in records)
    low, high = concurrencies[0], concurrencies[-1]
    ratio = seconds[low] / seconds[high]
    print(f"endpoint: {questions} questions, server latency {delay * 1000:.0f} ms/request")
    for n in concurrencies:
        print(f"  concurrency {n:<3}: {seconds[n]:8.2f} s  ({questions / seconds[n]:6.1f} q/s)")
    print(f"  throughput ratio {high} vs {low}: {ratio:.2f}x   (target >= 12x, limit {high / low:.0f}x)")
    return ratio


def bench_resume_overhead(samples: int, max_new_tokens: int, batch_size: int, repeats: int) -> float:
    """The predictions log's cost (append per batch + read + merge) as a share of the run's generation."""
    import tempfile

    import numpy as np
    from PIL import Image

    import skinvl
    from skinvl.evaluation.runs import PredictionLog, Row
    from skinvl.inference.batching import LocalAnswerer
    from skinvl.inference.images import LazyImages
    from skinvl.inference.loading import LoadedModel

    loaded = LoadedModel.wrap(*skinvl.load("skinvl-tiny"))
    rng = np.random.default_rng(1)
    pictures = [Image.fromarray(rng.integers(0, 255, (32, 40, 3), dtype=np.uint8)) for _ in range(samples)]
    images = LazyImages(lambda i: _png(pictures[i]), samples)
    rows = [Row(f"test-{i:05d}", i, f"What does image {i} show?", {"answer": "A nevus.", "modality": "clinical"})
            for i in range(samples)]
    answerer = LocalAnswerer(loaded, batch_size=batch_size, generate_kwargs={"max_new_tokens": max_new_tokens})
    t_run, batches = _timed(lambda: list(answerer.answer(rows, images)), repeats)

    def log_cycle():
        with tempfile.TemporaryDirectory() as folder:
            log = PredictionLog(folder)
            log.start(resume=False)
            for records in batches:
                log.append(records)
            log.read()
            log.merge(rows)

    t_log, _ = _timed(log_cycle, repeats)
    share = t_log / t_run
    print(f"resume overhead: {samples} questions, batch {batch_size}, median of {repeats}")
    print(f"  generation    : {t_run:8.3f} s")
    print(f"  log (append per batch + read + merge): {t_log * 1000:8.2f} ms = {100 * share:.3f} % of the run "
          f"(target < 1 %); {1e6 * t_log / samples:.0f} us per question")
    return share


def _synthetic_answers(rows: int, seed: int = 0) -> tuple[list[str], list[str], list[str]]:
    """References and two models' answers: yes/no questions (about a third) and free text."""
    rng = random.Random(seed)
    words = ("the lesion is a well demarcated erythematous plaque with scale nevus melanoma basal cell "
             "carcinoma pigmented network dermoscopy shows irregular dots globules").split()
    refs, first, second = [], [], []
    for i in range(rows):
        text = " ".join(rng.choices(words, k=rng.randint(4, 20)))
        ref = (rng.choice(["Yes, ", "No, "]) + text) if i % 3 == 0 else text.capitalize() + "."
        refs.append(ref)
        for answers, keep in ((first, 0.5), (second, 0.6)):
            tokens = [t if rng.random() < keep else rng.choice(words) for t in ref.split()]
            answers.append(" ".join(tokens))
    return refs, first, second


def bench_bootstrap(rows: int, resamples: int, seed: int = 0) -> dict[str, float]:
    """Per metric: seconds to build both runs' per-row statistics and to run the paired bootstrap."""
    import numpy as np

    from skinvl.evaluation import bootstrap

    refs, first, second = _synthetic_answers(rows)
    rng = np.random.default_rng(seed)

    builders = {
        "bleu_4 (nltk corpus; bleu_1 shares its statistics)": lambda preds: bootstrap.nltk_bleu_statistics(
            preds, refs, {"bleu_4": bootstrap.PAPER_BLEU["bleu_4"]})["bleu_4"],
        "sacrebleu (corpus)": lambda preds: bootstrap.sacrebleu_statistic(preds, refs),
        "mean metric (rouge_l, meteor, bertscore_f1, token_recall)": lambda preds: bootstrap.mean_statistic(
            rng.random(len(preds)).tolist()),
        "yes_no_accuracy (ratio)": lambda preds: bootstrap.yes_no_statistic(preds, refs),
    }
    print(f"paired bootstrap: {rows} rows, 2 runs, {resamples} resamples, seed {seed}")
    timings = {}
    for name, build in builders.items():
        t0 = time.perf_counter()
        base, other = build(first), build(second)
        t_build = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = bootstrap.paired_differences({"m": base}, {"b": {"m": other}}, rows, resamples=resamples, seed=seed)
        t_boot = time.perf_counter() - t0
        ci = result["b"]["m"]
        timings[name] = t_build + t_boot
        print(f"  {name:58s}: statistics {t_build:6.2f} s, bootstrap {t_boot:6.2f} s "
              f"(delta {100 * ci['delta']:+.2f} [{100 * ci['ci_low']:+.2f}, {100 * ci['ci_high']:+.2f}])")
    return timings


def bench_compare(rows: int, resamples: int, seed: int = 0) -> float:
    """Wall time of ``compare_runs`` (both protocols, every CI metric, files) on two synthetic run folders."""
    import json
    import tempfile

    import numpy as np

    from skinvl.evaluation.compare import CompareOptions, compare_runs

    refs, first, second = _synthetic_answers(rows)
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        folders = []
        for name, preds in (("a", first), ("b", second)):
            folder = Path(tmp) / name
            folder.mkdir()
            columns = ["rouge_l", "meteor", "bertscore_f1", "token_recall", "rouge_l_standard", "meteor_standard"]
            with (folder / "predictions.csv").open("w", newline="", encoding="utf-8") as f:
                writer = csv.writer(f)
                writer.writerow(["id", "modality", "question", "answer", "prediction", *columns])
                for i, (ref, pred) in enumerate(zip(refs, preds, strict=True)):
                    writer.writerow([f"q{i}", "clinical", "q?", ref, pred, *rng.random(len(columns)).round(6)])
            metrics = {"paper": {"rouge_l": 0.5}, "standard": {"rouge_l": 0.5}}
            (folder / "results.json").write_text(json.dumps({"task": "vqa", "name": name, "split": "test", "config": "vqa",
                                                             "protocol": "both", "metrics": metrics, "n_samples": rows}))
            folders.append(str(folder))
        t0 = time.perf_counter()
        compare_runs(CompareOptions(runs=folders, out=str(Path(tmp) / "cmp"), resamples=resamples, seed=seed))
        elapsed = time.perf_counter() - t0
    print(f"eval compare, 2 runs x {rows} rows, both protocols (11 CI metrics), {resamples} resamples: {elapsed:.2f} s")
    return elapsed


def _png(image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    """Run both benchmarks and print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--skip-scorer", action="store_true")
    parser.add_argument("--resume-samples", type=int, default=256, help="questions of the resume-overhead run")
    parser.add_argument("--endpoint-questions", type=int, default=256)
    parser.add_argument("--endpoint-delay", type=float, default=0.2, help="server latency per request (s)")
    parser.add_argument("--skip-endpoint", action="store_true")
    parser.add_argument("--bootstrap-rows", type=int, default=5452, help="rows of the synthetic split")
    parser.add_argument("--bootstrap-resamples", type=int, default=1000)
    parser.add_argument("--bootstrap-only", action="store_true", help="run only the bootstrap benchmark")
    args = parser.parse_args(argv)
    bench_bootstrap(args.bootstrap_rows, args.bootstrap_resamples)
    bench_compare(args.bootstrap_rows, args.bootstrap_resamples)
    if args.bootstrap_only:
        return 0
    bench_generation(args.samples, args.repeats, args.max_new_tokens, args.batch_size, args.threads)
    bench_resume_overhead(args.resume_samples, args.max_new_tokens, args.batch_size, args.repeats)
    if not args.skip_endpoint:
        bench_endpoint(args.endpoint_questions, args.endpoint_delay)
    if not args.skip_scorer:
        bench_scorer(args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
