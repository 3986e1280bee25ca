"""Benchmark `mm-skin benchmark build`: seconds per 1,000 images, against reading the same files.

    python bench/benchmark_build.py                # 1,000 HAM10000-sized images (600 x 450 JPEG)
    python bench/benchmark_build.py --images 3000 --num-proc 2

Writes a HAM10000 stand-in (``HAM10000_metadata.csv`` + two part folders of synthetic 600 x 450
JPEGs, the real images' size) once, then times, median of ``--repeat`` runs: the baseline (read
every image file's bytes, as the build must) and the build into a fresh folder (metadata, seeded
lesion split, image check, Parquet, card). Prints seconds per 1,000 images of each and the ratio.
"""

from __future__ import annotations

import argparse
import csv
import io
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from mm_skin.benchmarks.write import build_benchmark


def _stand_in(root: Path, n: int) -> list[Path]:
    rng = np.random.default_rng(0)
    paths, rows = [], []
    for i in range(n):
        image_id = f"ISIC_{24306 + i:07d}"
        part = root / f"HAM10000_images_part_{1 + i % 2}"
        part.mkdir(parents=True, exist_ok=True)
        base = rng.integers(60, 200, (45, 60, 3), dtype=np.uint8)
        img = Image.fromarray(base).resize((600, 450), Image.Resampling.BILINEAR)
        buffer = io.BytesIO()
        img.save(buffer, "JPEG", quality=90)
        (part / f"{image_id}.jpg").write_bytes(buffer.getvalue())
        paths.append(part / f"{image_id}.jpg")
        rows.append([f"HAM_{i // 2:07d}", image_id, ["nv", "mel", "bkl"][i % 3], "histo", 40, "male", "back"])
    with open(root / "HAM10000_metadata.csv", "w", newline="") as f:
        csv.writer(f).writerows([["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"], *rows])
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--num-proc", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "ham"
        paths = _stand_in(source, args.images)
        baseline, build = [], []
        for k in range(args.repeat):
            start = time.perf_counter()
            total = sum(len(p.read_bytes()) for p in paths)
            baseline.append(time.perf_counter() - start)
            start = time.perf_counter()
            build_benchmark("ham10000", source, Path(tmp) / f"out{k}", num_proc=args.num_proc)
            build.append(time.perf_counter() - start)
    per_k = 1000 / args.images
    b, r = statistics.median(build), statistics.median(baseline)
    print(f"{args.images} images ({total / args.images / 1e3:.0f} kB each), num_proc {args.num_proc}, "
          f"median of {args.repeat}:")
    print(f"  build: {b * per_k:.2f} s per 1,000 images;  reading the files alone: {r * per_k:.3f} s per 1,000; "
          f"ratio {b / r:.1f}")


if __name__ == "__main__":
    main()
