"""Benchmark `mm-skin build` against the I/O floor and a naive `datasets` route.

    python bench/build.py                      # scales 0.05 and 0.2 of the real release
    python bench/build.py --scales 1.0 --repeat 1 --naive-scale 0.05

For each scale it writes a synthetic release shaped like MM-Skin (11,039 images x scale, PNGs of
realistic size, ~2.45 VQA pairs per image, ~20% of them in an official-format test CSV), reads
every image once (page cache warm for every route alike), then runs, each route in its own fresh
subprocess (so peak RSS is that route's alone) after an ``os.sync()`` (no dirty pages of the last
route still being written back), the routes interleaved ``--repeat`` times:

* floor     - read every image file and write the same bytes to one Parquet file with pyarrow
              directly (no compression, no dictionary, no validation): the least work that puts
              every image into Parquet once. Image bytes are stored uncompressed by the build
              too, so both routes pay the same per byte;
* floor_out - the same, but each image written into every output the build must store it in
              (its modality config's split, and each vqa split it has QA pairs in): ~2.4x the
              floor's bytes. A second, clearly separate figure: the build cannot write less;
* build     - `mm_skin.build.build(...)`: all configs, validation, card, report;
* naive     - `datasets.Dataset.from_generator` yielding decoded PIL images for the caption and
              vqa configs, then `to_parquet` (what one writes without thinking about bytes).

Times are of the route body in the child (its imports included, interpreter start-up not).
It prints wall-time medians, peak RSS, and the ratios build/floor (target <= 1.5),
build/floor_out, naive/build (target >= 3) and the build's peak RSS at the smallest and largest
scale (target < 1 GiB, flat).
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import os
import random
import resource
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

FULL_IMAGES = 11_039
QA_PER_IMAGE = 2.45
MODALITY_STRINGS = ("skin", "dermoscopy", "pathology")


# ---------------------------------------------------------------------------------------------
# synthetic release
# ---------------------------------------------------------------------------------------------


def _base_pngs(n: int, seed: int) -> list[bytes]:
    """PNGs of textbook-figure size (~400-700 px, ~100-300 KB): smooth shapes plus noise."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        w, h = int(rng.integers(400, 700)), int(rng.integers(300, 560))
        y, x = np.mgrid[0:h, 0:w]
        base = np.stack([(x * rng.uniform(0.1, 0.4) + y * rng.uniform(0.1, 0.4) + c * 60) % 256 for c in range(3)], -1)
        noise = rng.normal(0, rng.uniform(4, 9), (h, w, 3))
        img = Image.fromarray(np.clip(base + noise, 0, 255).astype("uint8"), "RGB")
        buf = io.BytesIO()
        img.save(buf, "PNG", compress_level=6)
        out.append(buf.getvalue())
    return out


def _unique(png: bytes, index: int) -> bytes:
    """Make a PNG unique by inserting a valid tEXt chunk after IHDR (pixels unchanged)."""
    data = b"mm-skin-bench\x00" + str(index).encode()
    chunk = struct.pack(">I", len(data)) + b"tEXt" + data + struct.pack(">I", zlib.crc32(b"tEXt" + data))
    return png[:33] + chunk + png[33:]


def make_release(root: Path, scale: float, seed: int = 0) -> dict[str, float]:
    """Write MM-SkinQA/{caption.csv, VQA.csv, dataset/} and the test CSV under ``root``."""
    rng = random.Random(seed)
    n = max(30, round(FULL_IMAGES * scale))
    bases = _base_pngs(48, seed)
    qa_root = root / "MM-SkinQA"
    (qa_root / "dataset").mkdir(parents=True)
    captions, vqa, test = [], [], []
    total = 0
    words = "lesion plaque papule nodule erythema scale border pigment network nuclei dermis epidermis".split()
    for i in range(n):
        rel = f"dataset/bk{rng.randint(1, 15)}_{i // 100}_{i % 100}.png"
        png = _unique(bases[i % len(bases)], i)
        (qa_root / rel).write_bytes(png)
        total += len(png)
        caption = f"A {rng.randint(1, 90)}-year-old {rng.choice(['man', 'woman'])} with " + " ".join(rng.choices(words, k=rng.randint(8, 40))) + "."
        captions.append([rel, caption, rng.choice(MODALITY_STRINGS)])
        for j in range(rng.choice([1, 2, 2, 3, 3, 4]) if rng.random() < 0.98 else 1):
            row = [rel, f"Question {j} about the {rng.choice(words)}?", " ".join(rng.choices(words, k=rng.randint(5, 45))) + "."]
            vqa.append(row)
            if rng.random() < 0.2:
                test.append(row)
    for path, header, rows in (
        (qa_root / "caption.csv", ["image", "cleaned_caption", "modality"], captions),
        (qa_root / "VQA.csv", ["image", "question", "answer"], vqa),
        (root / "Dataframe/test/vqa/MM-Skin_test.csv", ["image", "question", "answer"], test),
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(rows)
    return {"images": n, "qa": len(vqa), "test_qa": len(test), "image_mb": total / 1e6}


# ---------------------------------------------------------------------------------------------
# routes (each runs in a child process: `bench/build.py --route NAME RELEASE OUT`)
# ---------------------------------------------------------------------------------------------


def route_floor(release: Path, out: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = sorted((release / "MM-SkinQA/dataset").iterdir())
    schema = pa.schema([("bytes", pa.binary()), ("path", pa.string())])
    out.mkdir(parents=True)

    def table(batch: list[bytes], names: list[str]) -> pa.Table:
        # one memcpy per image (pa.array(list_of_bytes) is several times slower)
        offsets = pa.array([0, *itertools.accumulate(map(len, batch))], pa.int32()).buffers()[1]
        data = pa.Array.from_buffers(pa.binary(), len(batch), [None, offsets, pa.py_buffer(b"".join(batch))])
        return pa.Table.from_arrays([data, pa.array(names, pa.string())], schema=schema)

    with pq.ParquetWriter(out / "images.parquet", schema, compression="none", use_dictionary=False, write_statistics=False) as w:
        batch, names, size = [], [], 0
        for p in paths:
            batch.append(p.read_bytes())
            names.append(p.name)
            size += len(batch[-1])
            if size >= 32 << 20:
                w.write_table(table(batch, names))
                batch, names, size = [], [], 0
        if batch:
            w.write_table(table(batch, names))


def _image_sinks(release: Path) -> dict[str, list[str]]:
    """File name -> the (config/split) outputs the build must store that image in.

    Each image is stored once in its modality config (split: test when the official test CSV
    names it) and once per vqa split it has QA pairs in (the vqa dictionary keeps one copy per
    row group); this is the output any correct build has to write, whatever its code.
    """
    qa_root = release / "MM-SkinQA"

    def rows(path: Path) -> list[dict[str, str]]:
        with open(path, encoding="utf-8") as f:
            return list(csv.DictReader(f))

    test = rows(release / "Dataframe/test/vqa/MM-Skin_test.csv")
    test_ids = {(r["image"], r["question"], r["answer"]) for r in test}
    test_images = {r["image"] for r in test}
    sinks: dict[str, set[str]] = {}
    for r in rows(qa_root / "caption.csv"):
        split = "test" if r["image"] in test_images else "train"
        sinks.setdefault(Path(r["image"]).name, set()).add(f"{r['modality']}/{split}")
    for r in rows(qa_root / "VQA.csv"):
        split = "test" if (r["image"], r["question"], r["answer"]) in test_ids else "train"
        sinks.setdefault(Path(r["image"]).name, set()).add(f"vqa/{split}")
    return {k: sorted(v) for k, v in sinks.items()}


def route_floor_out(release: Path, out: Path) -> None:
    """The floor, but writing each image into every output the build must store it in."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sinks = _image_sinks(release)
    paths = sorted((release / "MM-SkinQA/dataset").iterdir())
    schema = pa.schema([("bytes", pa.binary()), ("path", pa.string())])
    out.mkdir(parents=True)
    writers: dict[str, pq.ParquetWriter] = {}
    batches: dict[str, tuple[list[bytes], list[str]]] = {}

    def flush(name: str) -> None:
        batch, names = batches.pop(name)
        offsets = pa.array([0, *itertools.accumulate(map(len, batch))], pa.int32()).buffers()[1]
        data = pa.Array.from_buffers(pa.binary(), len(batch), [None, offsets, pa.py_buffer(b"".join(batch))])
        if name not in writers:
            (out / name).parent.mkdir(exist_ok=True)
            writers[name] = pq.ParquetWriter(out / f"{name}.parquet", schema, compression="none", use_dictionary=False,
                                             write_statistics=False)
        writers[name].write_table(pa.Table.from_arrays([data, pa.array(names, pa.string())], schema=schema))

    for p in paths:
        data = p.read_bytes()
        for name in sinks.get(p.name, []):
            batch, names = batches.setdefault(name, ([], []))
            batch.append(data)
            names.append(p.name)
            if sum(map(len, batch)) >= 32 << 20:
                flush(name)
    for name in list(batches):
        flush(name)
    for w in writers.values():
        w.close()


def route_build(release: Path, out: Path) -> None:
    from mm_skin.build import build

    build(release, out)


def route_naive(release: Path, out: Path) -> None:
    import datasets
    from PIL import Image

    from mm_skin.demographics import parse_age_sex
    from mm_skin.qa_columns import answer_type, question_id
    from mm_skin.schema import (
        CAPTION_FEATURES,
        MODALITIES,
        MODALITY_ALIASES,
        TEXTBOOKS,
        VQA_FEATURES,
    )

    qa_root = release / "MM-SkinQA"
    with open(qa_root / "caption.csv", encoding="utf-8") as f:
        captions = list(csv.DictReader(f))
    with open(qa_root / "VQA.csv", encoding="utf-8") as f:
        vqa = list(csv.DictReader(f))
    with open(release / "Dataframe/test/vqa/MM-Skin_test.csv", encoding="utf-8") as f:
        test = {(r["image"], r["question"], r["answer"]) for r in csv.DictReader(f)}
    modality_of = {r["image"]: MODALITIES.index(MODALITY_ALIASES[r["modality"]]) for r in captions}
    test_images = {t[0] for t in test}

    def image(rel: str) -> Image.Image:
        with Image.open(qa_root / rel) as im:
            im.load()
            return im.copy()  # a decoded image; datasets re-encodes it

    def tb(rel: str) -> int:
        return int(Path(rel).stem.split("_")[0][2:])

    def gen_captions(modality: int, split: str):
        for r in captions:
            if modality_of[r["image"]] == modality and (r["image"] in test_images) == (split == "test"):
                age, sex = parse_age_sex(r["cleaned_caption"])
                yield {"image": image(r["image"]), "image_id": Path(r["image"]).stem, "caption": r["cleaned_caption"],
                       "modality": modality, "textbook_id": tb(r["image"]), "textbook": TEXTBOOKS[tb(r["image"])],
                       "age": age, "sex": sex}

    def gen_vqa(split: str):
        for row, r in enumerate(vqa, 2):
            if ((r["image"], r["question"], r["answer"]) in test) == (split == "test"):
                yield {"image": image(r["image"]), "image_id": Path(r["image"]).stem, "question": r["question"],
                       "answer": r["answer"], "modality": modality_of[r["image"]], "textbook_id": tb(r["image"]),
                       "textbook": TEXTBOOKS[tb(r["image"])], "question_id": question_id("VQA.csv", row, r["image"], r["question"]),
                       "answer_type": answer_type(r["question"], r["answer"]), "image_in_test": r["image"] in test_images}

    cache = out / "_cache"
    for split in ("train", "test"):
        for m, name in enumerate(MODALITIES):
            ds = datasets.Dataset.from_generator(gen_captions, gen_kwargs={"modality": m, "split": split},
                                                 features=CAPTION_FEATURES, cache_dir=str(cache))
            ds.to_parquet(str(out / name / f"{split}.parquet"))
        ds = datasets.Dataset.from_generator(gen_vqa, gen_kwargs={"split": split}, features=VQA_FEATURES, cache_dir=str(cache))
        ds.to_parquet(str(out / "vqa" / f"{split}.parquet"))
    shutil.rmtree(cache)


ROUTES = {"floor": route_floor, "floor_out": route_floor_out, "build": route_build, "naive": route_naive}


def run_route(name: str, release: Path, out: Path) -> dict[str, float]:
    """Run one route in a fresh interpreter; return its wall time and peak RSS."""
    if out.exists():
        shutil.rmtree(out)
    os.sync()  # every route starts with no dirty pages of an earlier run still being written back
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_CACHE": str(out.parent / "hf-cache")}
    proc = subprocess.run([sys.executable, __file__, "--route", name, str(release), str(out)],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"route {name} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["out_mb"] = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 1e6
    shutil.rmtree(out)
    return result


def _child(name: str, release: Path, out: Path) -> None:
    t0 = time.perf_counter()
    ROUTES[name](release, out)
    wall = time.perf_counter() - t0  # route body only: interpreter start-up and imports excluded
    rss = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    print(json.dumps({"wall_s": wall, "peak_rss_mb": rss / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=float, nargs="+", default=[0.05, 0.2], help="fractions of the real release (11,039 images)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of floor and build per scale (median)")
    parser.add_argument("--naive-scale", type=float, default=0.05,
                        help="run the naive route only at this scale (it is slow; 0 = at every scale)")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--route", help=argparse.SUPPRESS)
    parser.add_argument("paths", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.route:
        _child(args.route, Path(args.paths[0]), Path(args.paths[1]))
        return

    work = Path(args.workdir or tempfile.mkdtemp(prefix="mm-skin-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for scale in args.scales:
            release = work / f"release-{scale}"
            if release.exists():
                shutil.rmtree(release)
            t0 = time.perf_counter()
            shape = make_release(release, scale)
            print(f"scale {scale}: {shape['images']} images ({shape['image_mb']:.0f} MB), {shape['qa']} QA "
                  f"({shape['test_qa']} test) written in {time.perf_counter() - t0:.1f}s", flush=True)
            res: dict[str, list[dict[str, float]]] = {"floor": [], "floor_out": [], "build": []}
            for p in (release / "MM-SkinQA/dataset").iterdir():  # page cache warm for every route alike
                p.read_bytes()
            for _ in range(args.repeat):  # interleaved, so a slow spell of the machine hits every route
                for name in res:
                    res[name].append(run_route(name, release, work / "out"))
            if not args.naive_scale or args.naive_scale == scale:
                res["naive"] = [run_route("naive", release, work / "out")]
            summary = {"scale": scale, **shape}
            for name, runs in res.items():
                summary[f"{name}_s"] = statistics.median(r["wall_s"] for r in runs)
                summary[f"{name}_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
                summary[f"{name}_out_mb"] = runs[0]["out_mb"]
                times = ", ".join(f"{r['wall_s']:.2f}" for r in runs)
                print(f"  {name:9s}: {summary[f'{name}_s']:7.2f} s median (runs: {times}), "
                      f"peak RSS {summary[f'{name}_rss_mb']:.0f} MB, output {summary[f'{name}_out_mb']:.0f} MB", flush=True)
            summary["build_over_floor"] = summary["build_s"] / summary["floor_s"]
            summary["build_over_floor_out"] = summary["build_s"] / summary["floor_out_s"]
            if "naive_s" in summary:
                summary["naive_over_build"] = summary["naive_s"] / summary["build_s"]
            print(f"  build / floor     = {summary['build_over_floor']:.2f} (target <= 1.5)", flush=True)
            print(f"  build / floor_out = {summary['build_over_floor_out']:.2f} (second figure: floor_out writes each image "
                  f"into every output the build must store it in, {summary['floor_out_out_mb'] / summary['floor_out_mb']:.2f}x "
                  f"the floor's bytes)"
                  + (f"; naive / build = {summary['naive_over_build']:.1f} (target >= 3)" if "naive_s" in summary else ""), flush=True)
            rows.append(summary)
            shutil.rmtree(release)
        if len(rows) > 1:
            a, b = rows[0], rows[-1]
            print(f"peak RSS of build: {a['build_rss_mb']:.0f} MB at {a['images']} images -> {b['build_rss_mb']:.0f} MB at "
                  f"{b['images']} images ({b['images'] / a['images']:.1f}x the data; target < 1024 MB and flat)")
        print(json.dumps(rows))
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
