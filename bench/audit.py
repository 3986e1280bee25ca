"""Benchmark `mm-skin audit`: fingerprinting speed and memory at two scales, and the pair search.

    python bench/audit.py                          # scales 200 and 2000 images, one process
    python bench/audit.py --scales 500 5000 --num-proc 2 --repeat 3

Images: ``--pool`` distinct synthetic PNGs of MM-Skin-like size (each side 500-1500 px, smooth
structures plus fine texture, as figures cut from textbooks), encoded once; the stream of a scale
cycles through the pool, each image made byte-distinct by a PNG text chunk carrying its number,
so every image is decoded and hashed (nothing is skipped as a byte duplicate) while the pool in
memory stays the same at every scale. Each scale runs ``--repeat`` times, each time in a fresh
subprocess, so its peak RSS is its own.

It prints, per scale, the median of: images/s and ms per image of `mm_skin.audit.collect`
(read + sha256 + decode + pixel digest + perceptual hashes, the whole streaming pass) and its peak
RSS; then the ratios large/small of ms per image (flat = 1) and of peak RSS (flat = 1); the median
ms per image of `fingerprint` alone on one core, split into decode and the rest (target <= 25 ms);
and the time of the pair search (`near_pairs`) over random hashes at the sizes of the sample
scales and of the real release (11,039 images).
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import statistics
import struct
import subprocess
import sys
import time
import zlib

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter, zoom

from mm_skin.audit import collect, find_clusters
from mm_skin.audit_sources import SourceRow
from mm_skin.image_hashes import VARIANTS, fingerprint, near_pairs

RELEASE_IMAGES = 11_039


def _figure(seed: int) -> bytes:
    """A PNG of textbook-figure size: smooth structures (upsampled fields) plus fine texture."""
    rng = np.random.default_rng(seed)
    width, height = (int(v) for v in rng.integers(500, 1501, 2))
    coarse = gaussian_filter(rng.standard_normal((height // 8 + 1, width // 8 + 1, 3)), (3, 3, 0))
    smooth = zoom(coarse, (8, 8, 1), order=1)[:height, :width]
    pixels = 128 + 60 * smooth / (smooth.std() + 1e-9) + rng.normal(0, 6, (height, width, 3))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB").save(buffer, "PNG")
    return buffer.getvalue()


def _numbered(png: bytes, number: int) -> bytes:
    """The same PNG with a tEXt chunk before IEND: other bytes, same pixels."""
    body = b"tEXt" + b"bench\x00" + str(number).encode()
    chunk = struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body))
    return png[:-12] + chunk + png[-12:]


def _rows(pool: list[bytes], n: int):
    for i in range(n):
        yield SourceRow("vqa", "train", i, [f"img{i}"], [_numbered(pool[i % len(pool)], i)],
                        qa=[(f"question {i % 97}?", f"answer {i % 89}.")])


def child(scale: int, pool_size: int, num_proc: int) -> dict[str, float]:
    """One scale in this process: time the streaming pass; report peak RSS."""
    pool = [_figure(seed) for seed in range(pool_size)]
    start, cpu = time.perf_counter(), time.process_time()
    collected = collect(_rows(pool, scale), num_proc=num_proc, progress=False)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    start = time.perf_counter()
    find_clusters(collected.images)
    search = time.perf_counter() - start
    assert len(collected.images.fingerprints) == scale and not collected.images.errors
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "images_per_s": scale / seconds, "ms_per_image": 1000 * seconds / scale,
            "cpu_ms_per_image": 1000 * cpu / scale,
            "search_s": search, "peak_rss_mb": rss, "pool_mb": sum(map(len, pool)) / 2**20}


def one_core_fingerprint(pool_size: int) -> dict[str, float]:
    """Median CPU ms of `fingerprint` per image (one core), and of the decode it includes.

    CPU time (``time.process_time``), not wall time: on a shared machine the wall clock also
    counts the time other processes held the core.
    """
    pool = [_figure(seed) for seed in range(pool_size)]
    total, decode, megapixels = [], [], []
    for data in pool:
        start = time.process_time()
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            megapixels.append(image.width * image.height / 1e6)
        decode.append(1000 * (time.process_time() - start))
        start = time.process_time()
        fingerprint(data)
        total.append(1000 * (time.process_time() - start))
    return {"ms_median": statistics.median(total), "decode_ms_median": statistics.median(decode),
            "rest_ms_median": statistics.median(t - d for t, d in zip(total, decode, strict=True)),
            "megapixels_median": statistics.median(megapixels),
            "ms_per_megapixel_median": statistics.median(t / m for t, m in zip(total, megapixels, strict=True))}


def search_seconds(n: int) -> float:
    """Seconds of `near_pairs` over ``n`` random fingerprints (the search alone)."""
    hashes = np.random.default_rng(n).integers(0, 2**63, (n, VARIANTS, 2), dtype=np.uint64)
    start = time.perf_counter()
    near_pairs(hashes)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=int, nargs=2, default=[200, 2000])
    parser.add_argument("--pool", type=int, default=40, help="distinct images encoded once")
    parser.add_argument("--num-proc", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.pool, args.num_proc)))
        return
    results: dict[int, list[dict[str, float]]] = {scale: [] for scale in args.scales}
    for _ in range(args.repeat):
        for scale in args.scales:  # interleaved, so a busy moment on the machine hits both
            command = [sys.executable, __file__, "--child", str(scale), "--pool", str(args.pool),
                       "--num-proc", str(args.num_proc)]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            results[scale].append(json.loads(output.strip().splitlines()[-1]))
    median = {scale: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
              for scale, runs in results.items()}
    for scale, m in median.items():
        print(f"scale {scale:>6}: {m['images_per_s']:7.1f} images/s  {m['ms_per_image']:6.1f} ms/image "
              f"(main-process CPU {m['cpu_ms_per_image']:.1f} ms/image)  "
              f"peak RSS {m['peak_rss_mb']:6.0f} MB (pool of encoded images {m['pool_mb']:.0f} MB)  "
              f"pair search {m['search_s']:.2f} s  [num_proc {args.num_proc}, median of {args.repeat}]")
    small, large = (median[s] for s in args.scales)
    print(f"ratio large/small: ms per image {large['ms_per_image'] / small['ms_per_image']:.2f} "
          f"(flat = 1), peak RSS {large['peak_rss_mb'] / small['peak_rss_mb']:.2f} (flat = 1)")
    core = one_core_fingerprint(args.pool)
    print(f"fingerprint on one core (CPU time): median {core['ms_median']:.1f} ms/image (target <= 25) "
          f"= PNG decode {core['decode_ms_median']:.1f} + the rest {core['rest_ms_median']:.1f}; median "
          f"image {core['megapixels_median']:.2f} Mpx; {core['ms_per_megapixel_median']:.1f} ms per Mpx")
    for n in (*args.scales, RELEASE_IMAGES):
        print(f"pair search over {n:>6} images: {search_seconds(n):6.2f} s")


if __name__ == "__main__":
    main()
