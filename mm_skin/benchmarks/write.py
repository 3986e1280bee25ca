"""``mm-skin benchmark build``: a publisher's download -> Parquet folder + dataset card.

One config per label set (the paper's the default), each with the splits of
:mod:`mm_skin.benchmarks.splits`; columns ``image`` (original bytes), ``image_id``, ``label``
(ClassLabel) and, where the download has them, ``skin_type``, ``age``, ``sex``, ``site``,
``lesion_id``, ``patient_id``, ``source``. Every input row is written or listed with its reason
in ``build_report.json``. The folder is written by :func:`mm_skin.build.guarded_output`.

>>> build_benchmark("ddi", "ddi-download", "ddi-hub").counts  # doctest: +SKIP
{'malignancy': {'train': 459, 'validation': 66, 'test': 131}, ...}
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
from datasets import ClassLabel, Features, Image, Value

from mm_skin.benchmarks import BENCHMARKS
from mm_skin.benchmarks.authors import read_test_file, require_test_file
from mm_skin.benchmarks.spec import Benchmark, ImageFiles, Row
from mm_skin.benchmarks.splits import (
    SplitResult,
    counts,
    folder_split,
    seeded_split,
    test_file_split,
)
from mm_skin.build import guarded_output
from mm_skin.card import arrow_nbytes, render_template, split_info_yaml
from mm_skin.images import read_images_ordered
from mm_skin.parquet import ShardedParquetWriter, parse_size
from mm_skin.report import REPORT_FILE, BuildReport, ReleaseError
from mm_skin.tables import binary_array
from mm_skin.untrusted import card_text

#: optional columns, in card order, with their Arrow-side feature
EXTRA_COLUMNS = {"skin_type": Value("string"), "age": Value("int32"), "sex": Value("string"), "site": Value("string"),
                 "lesion_id": Value("string"), "patient_id": Value("string"), "source": Value("string")}
SPLIT_ORDER = ("train", "validation", "test")
CARD_TEMPLATE = "benchmark_card.md.jinja"
_CHUNK_ROWS = 64  # images read and written per row group: a few MB in memory


@dataclasses.dataclass
class BenchmarkResult:
    """What :func:`build_benchmark` wrote: folder, rows per config and split, the report."""

    out: Path
    counts: dict[str, dict[str, int]]
    report: BuildReport
    split: SplitResult
    seconds: float


def _features(classes: Sequence[str], columns: Sequence[str]) -> Features:
    return Features({"image": Image(), "image_id": Value("string"), "label": ClassLabel(names=list(classes)),
                     **{c: EXTRA_COLUMNS[c] for c in columns}})


def _rows(benchmark: Benchmark, source: Path, files: ImageFiles, report: BuildReport) -> list[Row]:
    """The download's rows, each image id once (a repeat is listed, not written)."""
    if benchmark.read is None:
        return []
    rows: dict[str, Row] = {}
    for row in benchmark.read(source, report, files):
        if row.image_id in rows:
            first = rows[row.image_id]
            report.skip(row.file, row.row, "image", row.image_id, f"image id repeats {first.file} row {first.row}")
            continue
        rows[row.image_id] = row
    return list(rows.values())


def _split(benchmark: Benchmark, rows: list[Row], source: Path, files: ImageFiles, report: BuildReport, *,
           test_file: str | None, seed: int, test_fraction: float, validation_fraction: float) -> SplitResult:
    if benchmark.read is None:
        test_file = str(require_test_file(benchmark.name, test_file))
    if test_file:
        path = Path(test_file)
        entries = read_test_file(path, report)
        report.test_file = f"--test-file {path.name}"
        classes = benchmark.label_sets[benchmark.default]
        if classes is None and rows:  # classes found in the download (Dermnet's folders)
            classes = sorted({r.labels[benchmark.default] for r in rows if r.labels.get(benchmark.default)})
        return test_file_split(benchmark, rows, entries, source, files, report, report.test_file, classes)
    if any(r.split for r in rows):
        return folder_split(rows)
    if not 0 < test_fraction < 1 or not 0 <= validation_fraction < 1 - test_fraction:
        raise ReleaseError(f"--test-fraction {test_fraction} / --validation-fraction {validation_fraction}: give "
                           "0 < test < 1 and 0 <= validation < 1 - test")
    return seeded_split(rows, benchmark.group, seed, test_fraction, validation_fraction)


def _classes(benchmark: Benchmark, result: SplitResult) -> dict[str, list[str]]:
    """Class names of each label set (declared, else every label found, sorted case-insensitively)."""
    out = {}
    for name, declared in benchmark.label_sets.items():
        found = {r.labels[name] for rows in result.splits.values() for r in rows if r.labels.get(name)}
        if declared is None:
            out[name] = sorted(found, key=lambda s: (s.lower(), s))
        else:
            out[name] = list(declared)
    return {k: v for k, v in out.items() if v}


def _table(features: Features, config: str, rows: list[Row], images: list[Any]) -> pa.Table:
    names = features["label"].names
    index = {n: i for i, n in enumerate(names)}
    schema = features.arrow_schema
    image = pa.StructArray.from_arrays([binary_array(images), pa.array([r.image.name for r in rows], pa.string())],
                                       fields=list(schema.field("image").type))
    columns = {"image": image, "image_id": pa.array([r.image_id for r in rows], pa.string()),
               "label": pa.array([index[r.labels[config]] for r in rows], pa.int64())}
    for c in schema.names[3:]:
        columns[c] = pa.array([getattr(r, c) for r in rows], schema.field(c).type)
    return pa.table(columns, schema=schema)


def _chunks(rows: list[Row], report: BuildReport, num_proc: int) -> Iterator[tuple[list[Row], list[Any]]]:
    """Rows with their image bytes, a chunk at a time; unreadable images listed as not written."""
    for start in range(0, len(rows), _CHUNK_ROWS):
        chunk = rows[start:start + _CHUNK_ROWS]
        good, data = [], []
        for row, (buf, problem) in zip(chunk, read_images_ordered([r.image for r in chunk], num_proc), strict=True):
            if problem:
                report.skip(row.file, row.row, "image", row.image.name, problem)
            else:
                good.append(row)
                data.append(buf)
        report.images["written"] += len(good)
        report.images["bytes"] += sum(len(b) for b in data)
        yield good, data


def _write(folder: Path, result: SplitResult, classes: dict[str, list[str]], columns: list[str], report: BuildReport,
           *, num_proc: int, max_shard_bytes: int) -> dict[str, dict[str, list[str]]]:
    shards: dict[str, dict[str, list[str]]] = {}
    for split in [s for s in SPLIT_ORDER if s in result.splits]:
        writers = {}
        for config, names in classes.items():
            (folder / config).mkdir(exist_ok=True)
            writers[config] = ShardedParquetWriter(folder / config, split, _features(names, columns),
                                                   max_shard_bytes=max_shard_bytes, dedup_images=False)
        for rows, images in _chunks(result.splits[split], report, num_proc):
            for config, writer in writers.items():
                keep = [i for i, r in enumerate(rows) if r.labels.get(config)]
                if keep:
                    writer.write(_table(writer.features, config, [rows[i] for i in keep], [images[i] for i in keep]))
        for config, writer in writers.items():
            paths = writer.close()
            if paths:
                shards.setdefault(config, {})[split] = [p.relative_to(folder).as_posix() for p in paths]
                report.count_written(config, split, writer.rows)
    return shards


def build_benchmark(name: str, source: str | os.PathLike[str], out: str | os.PathLike[str], *,
                    test_file: str | None = None, seed: int = 0, test_fraction: float = 0.2,
                    validation_fraction: float = 0.1, overwrite: bool = False, force: bool = False,
                    num_proc: int = 1, max_shard_size: str = "500MB") -> BenchmarkResult:
    """Build benchmark ``name`` from its download at ``source`` into ``out`` (see the module docstring).

    Raises :class:`ReleaseError` (one line) for bad input; ``out`` is then untouched.
    """
    t0 = time.perf_counter()
    benchmark = BENCHMARKS.get(name)
    if benchmark is None:
        raise ReleaseError(f"unknown benchmark {name!r}; choose one of {', '.join(sorted(BENCHMARKS))}")
    root = Path(source)
    if not root.is_dir():
        raise ReleaseError(f"{source}: not a folder; give the {benchmark.title} download ({benchmark.layout})")
    with guarded_output(out, [source, test_file], overwrite=overwrite, force=force) as tmp:
        report = BuildReport()
        files = ImageFiles(root)
        if files.links:
            report.notes.append(f"{files.links} symbolic links under SOURCE were not followed")
        rows = _rows(benchmark, root, files, report)
        result = _split(benchmark, rows, root, files, report, test_file=test_file, seed=seed,
                        test_fraction=test_fraction, validation_fraction=validation_fraction)
        if not result.splits:
            raise ReleaseError(f"{source}: no row could be used (see the reasons listed); is this the "
                               f"{benchmark.title} download ({benchmark.layout})?")
        classes = _classes(benchmark, result)
        all_rows = [r for rows_ in result.splits.values() for r in rows_]
        columns = [c for c in EXTRA_COLUMNS if any(getattr(r, c) is not None for r in all_rows)]
        report.images["referenced"] = len(all_rows)
        report.notes.append(f"split: {result.method}; rows {dict(counts(result))}; {len(result.moved)} rows moved "
                            "to keep a group on one side")
        shards = _write(tmp, result, classes, columns, report, num_proc=num_proc,
                        max_shard_bytes=parse_size(max_shard_size))
        if benchmark.default not in shards:
            raise ReleaseError(f"{source}: no image could be written (see the reasons listed)")
        _write_report(tmp, report, result)
        (tmp / "README.md").write_text(card(tmp, benchmark, shards, classes, columns, report, result), encoding="utf-8")
    return BenchmarkResult(Path(os.path.abspath(out)), report.written, report, result, time.perf_counter() - t0)


def _write_report(folder: Path, report: BuildReport, result: SplitResult) -> None:
    """build_report.json: the build report plus the split (method, rows, the image ids moved)."""
    data = {**report.as_dict(), "split": {"method": result.method, "rows": dict(counts(result)),
                                          "moved_rows": result.moved}}
    (folder / REPORT_FILE).write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _info(folder: Path, files: dict[str, list[str]], features: Features, rows: dict[str, int]) -> dict[str, Any]:
    """The card's ``dataset_info`` entry of one config: features and rows / bytes per split
    (``mm-skin push`` checks the rows against the Parquet footers)."""
    size = {s: sum((folder / f).stat().st_size for f in paths) for s, paths in files.items()}
    memory = {s: sum(arrow_nbytes(folder / f) for f in paths) for s, paths in files.items()}
    return split_info_yaml(features, {s: rows[s] for s in files}, size, memory)


def card(folder: Path, benchmark: Benchmark, shards: dict[str, dict[str, list[str]]], classes: dict[str, list[str]],
         columns: list[str], report: BuildReport, result: SplitResult) -> str:
    """The dataset card: YAML ``configs`` (the default marked) with features, licence and terms."""
    import yaml

    configs, infos = [], []
    for config in classes:
        if config not in shards:
            continue
        entry: dict[str, Any] = {"config_name": config}
        if config == benchmark.default:
            entry["default"] = True
        entry["data_files"] = [{"split": s, "path": shards[config][s]} for s in SPLIT_ORDER if s in shards[config]]
        configs.append(entry)
        infos.append({"config_name": config, **_info(folder, shards[config], _features(classes[config], columns),
                                                     report.written[config])})
    def dump(obj: Any) -> str:
        return yaml.safe_dump(obj, sort_keys=False, allow_unicode=True, width=1000).rstrip()

    return render_template(CARD_TEMPLATE, benchmark=benchmark, configs_yaml=dump({"configs": configs}),
                           dataset_info_yaml=dump({"dataset_info": infos}), written=report.written,
                           # class names come from the publisher's files and folders: data, escaped
                           classes={c: [card_text(n) for n in names] for c, names in classes.items()},
                           columns=columns, split=result, skipped=len(report.skipped))
