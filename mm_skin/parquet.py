"""The sharded Parquet writer and the background threads that run its writes.

Shards are ``{split}-NNNNN-of-NNNNN.parquet``, the names ``datasets`` and the Hub's viewer
read; image bytes are stored as they are (uncompressed, deduplicated per row group in ``vqa``).
As ``datasets`` writes Parquet (``push_to_hub``, ``to_parquet``): with a page index, and with
content-defined chunking where pyarrow has it, so that a re-built release re-uploads through Xet
only the pages that changed.

Sizes read as ``datasets`` and ``huggingface_hub`` read ``max_shard_size``: KB/MB/GB are decimal,
KiB/MiB/GiB binary.

>>> parse_size("500MB"), parse_size("1.5 GiB"), parse_size("20000")
(500000000, 1610612736, 20000)
"""

from __future__ import annotations

import inspect
import json
import re
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from datasets import Features

from mm_skin.tables import ROW_GROUP_BYTES


def _leaves(schema: pa.Schema) -> list[str]:
    """Parquet column paths of an Arrow schema (lists as '.list.element', pyarrow's default)."""
    out: list[str] = []

    def walk(prefix: str, t: pa.DataType) -> None:
        if pa.types.is_struct(t):
            for f in t:
                walk(f"{prefix}.{f.name}", f.type)
        elif pa.types.is_list(t) or pa.types.is_large_list(t):
            walk(f"{prefix}.list.element", t.value_type)
        else:
            out.append(prefix)

    for f in schema:
        walk(f.name, f.type)
    return out


class ShardedParquetWriter:
    """Streams tables of one (config, split) into ``{split}-NNNNN-of-NNNNN.parquet`` files.

    Image bytes are stored uncompressed (PNG/JPEG do not compress further) and without
    statistics; in ``vqa`` they are dictionary-encoded so the several QA rows of one image
    share one copy inside a row group. Text columns get zstd.
    """

    def __init__(self, folder: Path, split: str, features: Features, *, max_shard_bytes: int, dedup_images: bool,
                 row_group_bytes: int = ROW_GROUP_BYTES) -> None:
        self.folder, self.split, self.features = folder, split, features
        self.schema = features.arrow_schema
        self.max_shard_bytes = max_shard_bytes
        leaves = _leaves(self.schema)
        image_leaves = [p for p in leaves if p.endswith(".bytes")]
        text_leaves = [p for p in leaves if p not in image_leaves]
        self.options: dict[str, Any] = {
            "compression": {p: ("none" if p in image_leaves else "zstd") for p in leaves},
            "use_dictionary": text_leaves + (image_leaves if dedup_images else []),
            "write_statistics": [p for p in text_leaves if not p.endswith(".path")],
            "dictionary_pagesize_limit": 2 * row_group_bytes if dedup_images else 1 << 20,
            # pages are cut every few rows (~1-2 MB of images), not once per 1,024 rows: with
            # the default, each row group's images were copied into one page buffer (+32 MB each)
            "write_batch_size": 4,
            "write_page_index": True,  # readers (the viewer, DuckDB) seek to pages by row
        }
        if "use_content_defined_chunking" in inspect.signature(pq.ParquetWriter.__init__).parameters:
            self.options["use_content_defined_chunking"] = content_defined_chunking()
        self.paths: list[Path] = []
        self.rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._shard_bytes = 0

    def write(self, table: pa.Table) -> None:
        """Append ``table`` as one row group; start a new shard once this one is full."""
        if self._writer is None or self._shard_bytes >= self.max_shard_bytes:
            self._close_current()
            path = self.folder / f"{self.split}-{len(self.paths):05d}.parquet.partial"
            self.paths.append(path)
            self._writer = pq.ParquetWriter(path, self.schema, **self.options)
            if "use_content_defined_chunking" in self.options:  # as datasets marks its files
                cdc = json.dumps(self.options["use_content_defined_chunking"])
                self._writer.add_key_value_metadata({"content_defined_chunking": cdc})
            self._shard_bytes = 0
        self._writer.write_table(table, row_group_size=max(1, table.num_rows))
        self._shard_bytes += table.nbytes
        self.rows += table.num_rows

    def _close_current(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def abort(self) -> None:
        """Drop the open file after a failed build (full disk...): close it, ignoring errors, so that
        garbage collection does not try (and fail, printing tracebacks) again."""
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception:  # noqa: BLE001 - the build's own error is the one reported
                self._writer.is_open = False  # pyarrow's flag: __del__ would close again
            self._writer = None

    def close(self) -> list[Path]:
        """Finish and give the shards their final ``-of-N`` names."""
        self._close_current()
        n = len(self.paths)
        final = []
        for i, p in enumerate(self.paths):
            target = self.folder / f"{self.split}-{i:05d}-of-{n:05d}.parquet"
            p.rename(target)
            final.append(target)
        return final


class BackgroundWrites:
    """Runs each output's Parquet writes on a thread of its own, with bounded bytes in flight.

    ``ParquetWriter.write_table`` releases the GIL for its copies and the kernel's page-cache
    writes, so the outputs (a modality config and vqa take the same image) are written in
    parallel with each other and with the main thread's reading and row assembly. One thread per
    output keeps each output's row groups in order. The main thread waits when ``budget`` bytes
    of tables are queued or being written, which bounds memory. A failed write is raised by the
    next :meth:`submit` or by :meth:`close`.
    """

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._in_flight = 0
        self._cond = threading.Condition()
        self._threads: dict[Any, ThreadPoolExecutor] = {}
        self._futures: list[Future[None]] = []

    def submit(self, key: Any, writer: ShardedParquetWriter, table: pa.Table) -> None:
        """Queue ``writer.write(table)`` on output ``key``'s thread (waits while over budget)."""
        self._raise_failed()
        n = min(table.nbytes, self.budget)
        with self._cond:
            while self._in_flight + n > self.budget:  # a failed write frees its bytes too
                self._cond.wait()
            self._in_flight += n
        self._raise_failed()
        pool = self._threads.get(key)
        if pool is None:
            pool = self._threads[key] = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mm-skin-write")
        self._futures.append(pool.submit(self._write, writer, table, n))

    def _write(self, writer: ShardedParquetWriter, table: pa.Table, n: int) -> None:
        try:
            writer.write(table)
            del table
            # Hand the freed pages back: the allocator (mimalloc) otherwise keeps each writer
            # thread's freed pages, and RSS grew with the release instead of staying flat.
            pa.default_memory_pool().release_unused()
        finally:
            with self._cond:
                self._in_flight -= n
                self._cond.notify_all()

    def _raise_failed(self) -> None:
        done = [f for f in self._futures if f.done()]
        self._futures = [f for f in self._futures if not f.done()]
        for f in done:
            f.result()

    def close(self, *, raise_failed: bool = True) -> None:
        """Wait for every queued write; raise the first failure (unless ``raise_failed`` is False)."""
        for pool in self._threads.values():
            pool.shutdown(wait=True)
        if raise_failed:
            self._raise_failed()


#: table bytes queued for or inside ParquetWriter.write_table at once (see BackgroundWrites)
WRITE_BUDGET_BYTES = 64 << 20


def content_defined_chunking() -> dict[str, int]:
    """datasets' content-defined chunking options (pages cut by content, 256 KiB - 1 MiB)."""
    from datasets import config

    default = {"min_chunk_size": 256 * 1024, "max_chunk_size": 1024 * 1024, "norm_level": 0}
    return dict(getattr(config, "DEFAULT_CDC_OPTIONS", default))


def parse_size(size: str | int) -> int:
    """Bytes in ``size`` ("500MB", "2 GiB", 20000): KB/MB/GB decimal, KiB/MiB/GiB binary, as
    ``datasets``' ``max_shard_size`` (whose parser this defers to, allowing spaces and decimals)."""
    from datasets.utils.py_utils import convert_file_size_to_int

    if isinstance(size, int):
        return size
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B)?\s*", size, re.I)
    if not m:
        raise ValueError(f"cannot parse size {size!r}: use e.g. 500MB (decimal) or 512MiB (binary)")
    number, unit = float(m.group(1)), m.group(2)
    if unit is None:
        return int(number)
    scale = 1_000_000 if number != int(number) else 1  # datasets takes whole numbers only
    return convert_file_size_to_int(f"{int(number * scale)}{unit}") // scale
