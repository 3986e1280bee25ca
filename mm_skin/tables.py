"""Arrow tables of every config, in the exact layout of the ``datasets`` features.

One generator, :func:`iter_tables`, serves the caption, modality and vqa configs in ONE pass
over the images (each file read once); :func:`iter_instruct_tables` serves ``instruct``. Both
the builder class and the Parquet build consume them. ``Image`` is ``struct<bytes, path>``.

>>> from mm_skin.release import load_release
>>> plan = load_release("examples/mm-skin-sample")  # doctest: +SKIP
>>> next(iter_tables(plan, [("vqa", "test")]))[2].num_rows  # doctest: +SKIP
12
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa

from mm_skin.images import high_bit_depth_note, read_images_ordered
from mm_skin.messages import llava_to_messages
from mm_skin.paths import UnsafePathError, resolve_inside
from mm_skin.qa_columns import answer_type, question_id
from mm_skin.release import ImageEntry, InstructFile, ReleasePlan, image_key
from mm_skin.report import BuildReport, ReleaseError, short_repr, unreadable_file
from mm_skin.schema import INSTRUCT_FEATURES, MODALITIES, SPLITS, TEXTBOOKS, features_for

ROW_GROUP_BYTES = 32 << 20  # image bytes per row group: bounded memory, dictionary-dedup window
# Image bytes held in unfinished row groups over ALL (config, split) outputs together: past it the
# fullest one is flushed early, so memory stays flat however many outputs fill in parallel.
PENDING_BYTES = 64 << 20


def binary_array(values: Sequence[bytes | pa.Buffer]) -> pa.Array:
    """A pyarrow binary array holding ``values`` with one memcpy each, in Arrow's memory pool.

    ``pa.array(list_of_bytes)`` and ``b"".join`` allocate fresh memory for every batch (page
    faults: several times slower on images, see bench/build.py); the pool recycles pages.
    """
    offsets = [0] * (len(values) + 1)
    total = 0
    for i, v in enumerate(values):
        total += len(v)
        offsets[i + 1] = total
    if total >= 2**31:
        raise ValueError("binary batch over 2 GiB; lower the row-group size")
    data = pa.allocate_buffer(total)
    view = memoryview(data).cast("B") if total else None
    for v, start, end in zip(values, offsets, offsets[1:], strict=False):
        if end > start:
            view[start:end] = memoryview(v).cast("B")
    return pa.Array.from_buffers(pa.binary(), len(values), [None, pa.array(offsets, pa.int32()).buffers()[1], data])


class _Batch:
    """Column buffers of one (config, split) until they reach the row-group byte target."""

    def __init__(self, config: str) -> None:
        self.config = config
        self.cols: dict[str, list[Any]] = {name: [] for name in features_for(config)}
        self.nbytes = 0
        self.rows = 0

    def add(self, row: dict[str, Any], nbytes: int) -> None:
        for k, v in row.items():
            self.cols[k].append(v)
        self.nbytes += nbytes
        self.rows += 1

    def to_table(self) -> pa.Table:
        schema = features_for(self.config).arrow_schema
        arrays = []
        for field in schema:
            values = self.cols[field.name]
            if field.name == "image":
                arrays.append(
                    pa.StructArray.from_arrays(
                        [binary_array([v[0] for v in values]), pa.array([v[1] for v in values], pa.string())],
                        fields=list(field.type),
                    )
                )
            else:
                arrays.append(pa.array(values, field.type))
        return pa.Table.from_arrays(arrays, schema=schema)


def _add_image_rows(e: ImageEntry, data: pa.Buffer, wanted: set[tuple[str, str]],
                    batches: dict[tuple[str, str], _Batch], report: BuildReport) -> None:
    """Append every wanted caption and QA row of one image to its (config, split) batch."""
    image = (data, Path(e.key).name)
    textbook = TEXTBOOKS.get(e.textbook_id) if e.textbook_id else None
    common = {"image": image, "image_id": e.image_id, "textbook_id": e.textbook_id, "textbook": textbook}
    for c in e.captions:
        out_cfg = MODALITIES[c.modality]
        key = (out_cfg, e.split) if (out_cfg, e.split) in wanted else ("captions", e.split)
        if key not in wanted:
            continue
        batches.setdefault(key, _Batch("clinical")).add(
            {**common, "caption": c.caption, "modality": c.modality, "age": c.age, "sex": c.sex}, len(data)
        )
        report.files[c.file].rows_written += 1
    for split, rows in e.qa.items():
        key = ("vqa", split)
        if key not in wanted or not rows:
            continue
        b = batches.setdefault(key, _Batch("vqa"))
        for r in rows:
            b.add({**common, "question": r.question, "answer": r.answer, "modality": e.modality,
                   "question_id": question_id(r.file, r.row, e.key, r.question),
                   "answer_type": answer_type(r.question, r.answer), "image_in_test": e.split == "test"}, len(data))
            report.files[r.file].rows_written += 1


def iter_tables(
    plan: ReleasePlan,
    targets: Iterable[tuple[str, str]] | None = None,
    *,
    num_proc: int = 1,
    row_group_bytes: int = ROW_GROUP_BYTES,
    pending_bytes: int = PENDING_BYTES,
    progress: bool = False,
) -> Iterator[tuple[str, str, pa.Table]]:
    """Yield ``(config, split, table)`` for the caption, modality and vqa configs in ONE pass.

    ``targets`` restricts the output to some (config, split) pairs (default: every modality
    config, ``captions`` is not generated here because it is the union of the three modality
    configs, and ``vqa``); only the images those rows need are read. Each image file is read
    once, even when several configs use it. Rows whose image is missing, empty or undecodable
    are reported in ``plan.report`` and left out. Tables carry ``features_for(config).arrow_schema``.
    A table holds up to ``row_group_bytes`` of image bytes; when the unfinished tables of all
    outputs together hold more than ``pending_bytes``, the fullest is yielded early.
    """
    wanted = set(targets) if targets is not None else {(c, s) for c in (*MODALITIES, "vqa") for s in SPLITS}
    report = plan.report

    def needed(e: ImageEntry) -> bool:
        if e.captions:
            mod = MODALITIES[e.modality]
            if (mod, e.split) in wanted or ("captions", e.split) in wanted:
                return True
        return any(("vqa", s) in wanted and rows for s, rows in e.qa.items())

    todo = [e for e in plan.images if needed(e)]
    batches: dict[tuple[str, str], _Batch] = {}
    bar = progress_bar(len(todo), "reading images", progress)
    for e, (data, problem) in zip(todo, read_images_ordered([e.path for e in todo], num_proc=num_proc), strict=True):
        bar.update(1)
        if problem is not None:
            report.images["bad"] += 1
            for file, row in e.rows():
                report.skip(file, row, "image", e.key, problem)
            continue
        assert data is not None
        report.images["written"] += 1
        report.images["bytes"] += len(data)
        note = high_bit_depth_note(data)
        if note is not None:
            for file, row in e.rows():
                report.warn(file, row, "image", e.key, note)
        _add_image_rows(e, data, wanted, batches, report)
        # Flush only between images: the rows of one image stay in one row group, so the vqa
        # dictionary stores its bytes once however many questions it has.
        pending = sum(b.nbytes for b in batches.values())
        for key, b in sorted(batches.items(), key=lambda kv: -kv[1].nbytes):
            if b.nbytes < row_group_bytes and pending <= pending_bytes:
                break
            pending -= b.nbytes
            yield key[0], key[1], b.to_table()
            del batches[key]
    bar.close()
    for (cfg, split), b in sorted(batches.items()):
        if b.rows:
            yield cfg, split, b.to_table()


# --------------------------------------------------------------------------------------------
# The instruct config: LLaVA JSON -> chat messages + images
# --------------------------------------------------------------------------------------------


def _instruct_image_path(value: str, plan: ReleasePlan) -> Path:
    """The real path of a LLaVA record's image inside the release (raises
    :class:`~mm_skin.paths.UnsafePathError` for a path that would leave it; nothing is opened).

    LLaVA paths are relative to an image folder: the release root (MM-SkinQA), the folder the
    user named, or (a bare file name) the release's ``dataset/``; the first that exists wins.
    """
    rel = value.strip().replace("\\", "/")
    candidates = [resolve_inside(plan.root, rel), resolve_inside(plan.source, rel),
                  resolve_inside(plan.root, image_key(PurePosixPath(rel).name))]
    return next((c for c in candidates if c.exists()), candidates[0])


def _instruct_records(f: InstructFile, plan: ReleasePlan) -> list[tuple[int, str, Path, list[dict[str, Any]]]]:
    """``(index, id, image path, messages)`` of each usable record of one LLaVA JSON file.

    A file that is not a JSON list raises :class:`ReleaseError`; a malformed record is
    reported with its index and left out.
    """
    report = plan.report
    try:
        records = json.loads(f.path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ReleaseError(f"{f.display}: malformed JSON ({e}); expected a LLaVA list of conversations") from None
    except RecursionError:
        raise ReleaseError(
            f"{f.display}: JSON nested too deeply to parse; a LLaVA file is a flat list of "
            "{\"image\": ..., \"conversations\": [...]} objects: regenerate it"
        ) from None
    except OSError as e:
        raise unreadable_file(f.display, e) from None
    if not isinstance(records, list):
        raise ReleaseError(f"{f.display}: expected a JSON list of conversations, got {type(records).__name__}")
    source = f.path.stem
    good = []
    for index, rec in enumerate(records):
        report.files[f.display].rows_read += 1
        if not isinstance(rec, dict):
            report.skip(f.display, index, None, short_repr(rec), "record is not a JSON object")
            continue
        image = rec.get("image")
        if not isinstance(image, str) or not image.strip():
            report.skip(f.display, index, "image", image, "conversation without an image")
            continue
        try:
            messages = llava_to_messages(rec.get("conversations"))
        except ValueError as e:
            report.skip(f.display, index, "conversations", short_repr(rec.get("conversations")), f"malformed conversation: {e}")
            continue
        try:
            path = _instruct_image_path(image, plan)
        except UnsafePathError as e:
            report.skip(f.display, index, "image", image, f"unsafe image path: {e}")
            continue
        rec_id = str(rec["id"]) if rec.get("id") is not None else f"{source}-{index}"
        good.append((index, rec_id, path, messages))
    return good


def iter_instruct_tables(plan: ReleasePlan, *, num_proc: int = 1, row_group_bytes: int = ROW_GROUP_BYTES,
                         progress: bool = False) -> Iterator[pa.Table]:
    """Yield ``instruct`` tables (split ``train``) from the plan's LLaVA JSON files.

    A file that is not a JSON list stops the build; a record without an image, without an
    assistant turn or otherwise malformed is reported with the file and its index and left out.
    """
    report = plan.report
    schema = INSTRUCT_FEATURES.arrow_schema
    for f in plan.instruct_files:
        good = _instruct_records(f, plan)
        source = f.path.stem
        batch: dict[str, list[Any]] = {"images": [], "messages": [], "source": [], "id": []}
        nbytes = 0
        bar = progress_bar(len(good), f"reading {f.path.name}", progress)
        for (index, rec_id, path, messages), (data, problem) in zip(good, read_images_ordered([g[2] for g in good], num_proc), strict=True):
            bar.update(1)
            if problem is not None:
                report.skip(f.display, index, "image", str(path.name), problem)
                continue
            note = high_bit_depth_note(data)
            if note is not None:
                report.warn(f.display, index, "image", str(path.name), note)
            batch["images"].append([{"bytes": data.to_pybytes(), "path": path.name}])
            batch["messages"].append(messages)
            batch["source"].append(source)
            batch["id"].append(rec_id)
            report.files[f.display].rows_written += 1
            nbytes += len(data)
            if nbytes >= row_group_bytes:
                yield pa.Table.from_pydict(batch, schema=schema)
                batch = {k: [] for k in batch}
                nbytes = 0
        bar.close()
        if batch["id"]:
            yield pa.Table.from_pydict(batch, schema=schema)


def progress_bar(total: int, desc: str, enabled: bool) -> Any:
    """A tqdm bar over ``total`` images (a no-op bar when not ``enabled``)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=not enabled or None, leave=False)
