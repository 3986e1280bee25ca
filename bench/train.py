"""Training throughput and memory of ``skinvl train`` on the skinvl-tiny model, on CPU.

One invocation measures two configurations, each in its own child process (so one run's freed
memory does not hide the other's): gradient (activation) checkpointing on (the paper's recipe) and
off. Each runs the real path (``skinvl.train.train``: TRL's SFTTrainer + peft LoRA + TRL's
vision-language collator) for a
few steps on synthetic long conversations, then reports

* samples/s: batch size / median step time, warm-up steps excluded;
* peak memory: the highest RSS sampled every 2 ms during training minus the RSS when training
  began (model, data and Python already loaded), in MiB;

and the ratios checkpointing/no-checkpointing. Usage::

    HF_HUB_OFFLINE=1 .venv/bin/python bench/train.py [--steps 12] [--batch-size 4] [--words 700]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

WORDS = "erythematous plaque with silver scale on the extensor surface and atypical pigment network".split()


def make_dataset(folder: Path, rows: int, words: int) -> None:
    """A vqa-schema dataset whose answers are ``words`` words long (long sequences)."""
    import datasets
    from PIL import Image

    answers = [" ".join(WORDS[(i + j) % len(WORDS)] for j in range(words)) for i in range(rows)]
    datasets.Dataset.from_dict(
        {
            "image": [Image.new("RGB", (64, 48), (20 * i % 255, 90, 160)) for i in range(rows)],
            "question": ["Describe the lesion in detail."] * rows,
            "answer": answers,
        },
        features=datasets.Features(
            {
                "image": datasets.Image(),
                "question": datasets.Value("string"),
                "answer": datasets.Value("string"),
            }
        ),
    ).save_to_disk(str(folder))


def sequence_length(data: str) -> int:
    """Tokens in the first training sequence (image tokens included), as the collator builds it."""
    import skinvl
    from skinvl.training_data import load_conversations, loss_masking, vision_collator

    _, processor = skinvl.load("skinvl-tiny")
    rows = load_conversations([data], ["vqa"]).rows
    collate = vision_collator(processor, loss_masking(processor, "vicuna_v1"))
    return int(collate([rows[0]])["input_ids"].shape[1])


def measure(data: str, output: str, checkpointing: bool, steps: int, batch_size: int, queue) -> None:
    """Child process: train ``steps`` steps and put (step times, peak RSS delta, tokens) on queue."""
    import psutil
    import torch
    from transformers import TrainerCallback

    from skinvl.train import TrainOptions, train

    torch.set_num_threads(max(1, (os.cpu_count() or 2)))
    process = psutil.Process()

    class Probe(TrainerCallback):
        def __init__(self) -> None:
            self.step_times: list[float] = []
            self.baseline = 0
            self.peak = 0
            self._stop = threading.Event()
            self._last = 0.0

        def _sample(self) -> None:
            while not self._stop.is_set():
                self.peak = max(self.peak, process.memory_info().rss)
                time.sleep(0.002)

        def on_train_begin(self, args, state, control, **kwargs):
            self.baseline = self.peak = process.memory_info().rss
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()

        def on_step_begin(self, args, state, control, **kwargs):
            self._last = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.step_times.append(time.perf_counter() - self._last)

        def on_train_end(self, args, state, control, **kwargs):
            self._stop.set()
            self._thread.join()

    probe = Probe()
    options = TrainOptions(
        model="skinvl-tiny",
        data=[data],
        configs=["vqa"],
        output=output,
        training_args=dict(per_device_train_batch_size=batch_size, max_steps=steps,
                           activation_checkpointing=checkpointing, logging_steps=10_000,
                           save_steps=10_000, report_to="none"),
        lora_r=128,
        lora_alpha=64,
    )
    train(options, callbacks=[probe])
    queue.put((probe.step_times, probe.peak - probe.baseline))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2, help="steps left out of the median")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--words", type=int, default=120, help="answer length (sets seq length)")
    args = parser.parse_args()

    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        make_dataset(data, rows=args.batch_size * args.steps, words=args.words)
        tokens = sequence_length(str(data))
        results = {}
        for checkpointing in (True, False):
            queue = context.Queue()
            child = context.Process(
                target=measure,
                args=(str(data), str(Path(tmp) / f"out-{checkpointing}"), checkpointing,
                      args.steps, args.batch_size, queue),
            )  # fmt: skip
            child.start()
            step_times, peak = queue.get()
            child.join()
            median = statistics.median(step_times[args.warmup :])
            results[checkpointing] = (args.batch_size / median, peak / 2**20)

    import torch

    print(f"skinvl-tiny on CPU ({torch.get_num_threads()} threads), LoRA r=128, batch "
          f"{args.batch_size}, {tokens} tokens/sample, median of steps "
          f"{args.warmup + 1}..{args.steps}")  # fmt: skip
    print(f"{'gradient checkpointing':<24}{'samples/s':>12}{'peak MiB (training)':>22}")
    for checkpointing in (True, False):
        rate, peak = results[checkpointing]
        print(f"{'on' if checkpointing else 'off':<24}{rate:>12.2f}{peak:>22.1f}")
    on, off = results[True], results[False]
    print(f"ratio on/off: speed {on[0] / off[0]:.2f}x, peak memory {on[1] / max(off[1], 1e-9):.2f}x")


if __name__ == "__main__":
    main()
