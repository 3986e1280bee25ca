"""Runs that survive: the predictions log, ``--resume``, data-parallel shards and provenance.

Every answer is appended to ``predictions.jsonl`` as soon as it exists (flushed per batch or per
response) with the stable id of its row. ``--resume`` reads the log back and asks only the rows
without a successful answer (failed rows are asked again); at the end the log is rewritten in
row order, so a resumed run leaves the same files as an uninterrupted one.

Under ``accelerate launch --num_processes N`` (or torchrun) rank r answers every N-th pending row
into ``predictions.rank{r}.jsonl``; after a barrier rank 0 merges them into ``predictions.jsonl``
(identical to a single-process run) and removes the rank files it merged.

A resume continues the SAME run or nothing. Beside the log, ``run_identity.json`` holds what made
its answers (task, model + revision + weights hash, template, decoding, dataset:
:func:`run_identity`); ``--resume`` under another identity, or of a log without one, is refused
naming the field that differs, and each answered row must still be asked the same question about
the same image. (A file beside the log, not a first line in it: predictions.jsonl stays one
record per line for every reader.)
References (and every other field of a row) always come from the dataset, never from the log,
so a dataset rebuilt with corrected references scores the kept answers against the new ones.
Records are type-checked as they are read back. While answering, the run holds an exclusive lock
(``fcntl.flock`` on :data:`LOCK_FILE` in the folder, with its process id): a second run into the
same ``--out`` refuses at once instead of interleaving its answers.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from skinvl.inference.decoding import DECODING_HELP, DECODINGS
from skinvl.inference.images import LazyImages

PREDICTIONS = "predictions.jsonl"
IDENTITY = "run_identity.json"  # beside the log: what made its answers (run_identity)
LOCK_FILE = ".skinvl-run.lock"  # a dot-file and a .lock: never pushed with the folder
PACKAGES = ("mm-skin", "transformers", "torch", "datasets", "huggingface_hub", "accelerate", "tokenizers",
            "pillow", "httpx")


class RunError(ValueError):
    """A run that cannot start or continue; the message names the file and the fix."""


@dataclass(kw_only=True)
class RunOptions:
    """Where a run writes, what it is called, and whether it continues an earlier one."""

    out: str = field(metadata={"help": "output folder (predictions.jsonl, results.json, results.md, PNG)"})
    name: str | None = field(default=None, metadata={"help": "label of the run in tables and cards (default: the model)"})
    limit: int | None = field(default=None, metadata={"help": "evaluate only the first N rows"})
    resume: bool = field(default=False, metadata={
        "help": "continue the run in --out: answered rows are kept, the others (and failed ones) asked"})


@dataclass(kw_only=True)
class DecodingOptions:
    """How answers are decoded (local generation and served requests alike)."""

    decoding: str = field(default="greedy", metadata={"help": DECODING_HELP, "choices": sorted(DECODINGS)})
    max_new_tokens: int | None = field(default=None, metadata={"help": "cap on generated tokens"})
    seed: int = field(default=0, metadata={"help": "random seed for sampled decoding"})
    batch_size: int = field(default=8, metadata={"help": "local model: questions per forward pass"})


@dataclass(frozen=True)
class Row:
    """One question of a run: stable ``id``, position ``index``, text, and fields for the record."""

    id: str
    index: int
    question: str
    fields: dict[str, Any] = field(default_factory=dict)

    def record(self, prediction: str | None, error: str | None = None) -> dict[str, Any]:
        """The JSONL record of this row: ok with a prediction, or failed with the reason."""
        status = {"status": "ok"} if error is None else {"status": "failed", "error": error}
        return {"id": self.id, **self.fields, "question": self.question, "prediction": prediction, **status}


class Answerer(Protocol):
    """A local model or a served endpoint: yields records (batch by batch, or one per response)."""

    def answer(self, rows: Sequence[Row], images: LazyImages) -> Iterator[list[dict[str, Any]]]: ...


def fingerprint(rows: Sequence[Row]) -> str:
    """blake2b of the row ids and questions: equal for the same rows of the same dataset."""
    digest = hashlib.blake2b(digest_size=16)
    for row in rows:
        digest.update(f"{row.id}\t{row.question}\n".encode())
    return digest.hexdigest()


def dataset_info(dataset: dict[str, Any], rows: Sequence[Row]) -> dict[str, Any]:
    """``dataset`` plus the row count and fingerprint of the rows scored, for results.json."""
    return {**dataset, "rows": len(rows), "row_ids_blake2b": fingerprint(rows)}


def run_identity(task: str, *, model: Mapping[str, Any], prompt: str | None, decoding: Mapping[str, Any],
                 dataset: Mapping[str, Any], blind: bool = False) -> dict[str, Any]:
    """What decides a run's answers, as JSON: the folder's IDENTITY file, compared on ``--resume``.

    ``blind`` is part of it: a blind run never resumes a log of answers that saw the images.

    ``prompt`` (the first question as the model receives it) stands for the chat template; the
    dataset's ``limit`` is left out: a resumed run may ask more or fewer rows of the same split.
    """
    prompt_hash = None if prompt is None else hashlib.blake2b(prompt.encode(), digest_size=16).hexdigest()
    identity = {"task": task, "model": dict(model), "template": {"first_prompt_blake2b": prompt_hash},
                "decoding": dict(decoding), "dataset": {k: v for k, v in dataset.items() if k != "limit"},
                "blind": blind}
    return json.loads(json.dumps(identity, default=str))  # the form it has when read back


def identity_difference(logged: Any, current: Any, path: str = "") -> tuple[str, Any, Any] | None:
    """The first field (dotted path) where two identities differ, with both values; None if equal."""
    if isinstance(logged, dict) and isinstance(current, dict):
        for key in sorted(set(logged) | set(current)):
            found = identity_difference(logged.get(key), current.get(key), f"{path}.{key}" if path else key)
            if found:
                return found
        return None
    return None if logged == current else (path or "identity", logged, current)


def check_record(record: Any, where: str) -> dict[str, Any]:
    """A log record with the types a resume relies on; RunError naming the file, line and field."""
    if not isinstance(record, dict) or not isinstance(record.get("id"), str) or not record["id"]:
        problem = "not a prediction record (no string 'id')"
    elif record.get("status") not in ("ok", "failed"):
        problem = f"'status' must be 'ok' or 'failed', got {record.get('status')!r}"
    elif not isinstance(record.get("question"), str):
        problem = f"'question' must be a string, got {type(record.get('question')).__name__}"
    elif record["status"] == "ok" and not isinstance(record.get("prediction"), str):
        problem = f"'prediction' of an answered row must be a string, got {type(record.get('prediction')).__name__}"
    else:
        return record
    raise RunError(f"{where}: {problem}; fix or remove the line (a removed row is asked again on --resume).")


@contextlib.contextmanager
def folder_lock(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on the run folder ``out``; RunError at once when another run holds it."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock (the log's identity check still guards resumes)
        yield
        return
    fd = os.open(out / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            raise RunError(f"{out}: another run (process {holder}) is writing to this folder; wait for it to finish "
                           "or choose another --out.") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


class PredictionLog:
    """``predictions.jsonl`` (or this rank's part) in ``out``: read back, appended, merged.

    With an ``identity`` (:func:`run_identity`) the folder's IDENTITY file records it, and logs
    written under another identity are refused.
    """

    def __init__(self, out: str | Path, rank: int = 0, world: int = 1, identity: dict[str, Any] | None = None):
        self.out = Path(out)
        self.path = self.out / (PREDICTIONS if world == 1 else f"predictions.rank{rank}.jsonl")
        self.identity, self.rank = identity, rank

    def files(self) -> list[Path]:
        """Every log of this run folder: the merged one and rank parts."""
        return [p for p in [self.out / PREDICTIONS, *sorted(self.out.glob("predictions.rank*.jsonl"))] if p.is_file()]

    def read(self) -> dict[str, dict[str, Any]]:
        """The latest record per row id over all logs (a truncated last line is ignored)."""
        records: dict[str, dict[str, Any]] = {}
        for path in self.files():
            lines = path.read_text(encoding="utf-8").split("\n")
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    if number == len(lines):  # the line a killed run was writing
                        continue
                    raise RunError(f"{path}, line {number}: not valid JSON ({err.msg}); fix or remove the line.") from err
                check_record(record, f"{path}, line {number}")
                if record.get("status") == "ok" or record["id"] not in records:
                    records[record["id"]] = record
        return records

    def start(self, resume: bool) -> None:
        """Check the folder: a new run must not overwrite an old log; a resumed one drops a torn line
        and must have the same identity."""
        self.out.mkdir(parents=True, exist_ok=True)
        existing = self.files()
        if existing and not resume:
            raise RunError(f"{existing[0]} exists: pass --resume to continue that run, or choose a new --out.")
        if self.path.is_file():
            data = self.path.read_bytes()
            if data and not data.endswith(b"\n"):  # killed mid-line: keep the complete lines only
                with self.path.open("r+b") as f:
                    f.truncate(data.rfind(b"\n") + 1)
        if self.identity is None:
            return
        if any(p.stat().st_size for p in self.files()):
            self._check_identity()
        if self.rank == 0:  # written before any answer; the same content again on a resume
            partial = self.out / f"{IDENTITY}.tmp"
            partial.write_text(json.dumps(self.identity, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
            partial.replace(self.out / IDENTITY)

    def _check_identity(self) -> None:
        """Refuse answers made under another identity (the first field that differs is named)."""
        path = self.out / IDENTITY
        try:
            logged = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            logged = None
        if not isinstance(logged, dict):
            raise RunError(f"{path}: missing or unreadable, so --resume cannot tell which model, decoding and data "
                           f"made the answers in {self.out / PREDICTIONS}: evaluate into a new --out.")
        found = identity_difference(logged, self.identity)
        if found:
            field_name, before, current = found
            raise RunError(f"{path}: --resume with another {field_name} ({current!r}; the answers in the folder were made "
                           f"with {before!r}) would credit them to this run: resume with the same settings, or "
                           "evaluate into a new --out.")

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        """Append records, one JSON line each, and flush them to the operating system."""
        with self.path.open("a", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
            f.flush()

    def merge(self, rows: Sequence[Row]) -> list[dict[str, Any]]:
        """Write ``predictions.jsonl`` in row order from every log; remove the merged rank parts.

        Each record takes the row's fields (reference, modality, ...) from ``rows``, i.e. from the
        dataset as it is now, whatever the log kept.
        """
        records = self.read()
        ordered = [{**records[row.id], **row.fields} for row in rows if row.id in records]
        target = self.out / PREDICTIONS
        partial = target.with_suffix(".jsonl.tmp")
        with partial.open("w", encoding="utf-8") as f:
            for record in ordered:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        partial.replace(target)
        for part in self.out.glob("predictions.rank*.jsonl"):
            part.unlink()
        return ordered


def check_resumed(rows: Sequence[Row], done: dict[str, dict[str, Any]], path: Path) -> None:
    """Refuse to resume into a log whose rows were asked other questions, or about other images (a
    changed dataset), or whose row ids are all foreign (another split, or ids of an older version):
    merging would drop them."""
    ids = {row.id for row in rows}
    if done and not ids & set(done):
        first = next(iter(done))
        raise RunError(f"{path}: none of its rows (e.g. {first!r}) belong to this split (ids like {rows[0].id!r}); it "
                       "was written for other data or by an older version: evaluate into a new --out.")
    for row in rows:
        record = done.get(row.id)
        if record is None:
            continue
        if record.get("question") != row.question:
            raise RunError(f"{path}: row {row.id} was asked {record.get('question')!r} but the data now asks "
                           f"{row.question!r}; the dataset changed: evaluate into a new --out.")
        image = row.fields.get("image_id")
        if image is not None and record.get("image_id") not in (None, image):
            raise RunError(f"{path}: row {row.id} was asked about image {record.get('image_id')!r} but the data now "
                           f"shows {image!r}; the dataset changed: evaluate into a new --out.")


def execute(rows: Sequence[Row], images: LazyImages, answerer: Answerer, options: RunOptions,
            description: str = "eval", identity: dict[str, Any] | None = None) -> list[dict[str, Any]] | None:
    """Ask every row not answered yet (this rank's share), log it, and merge on rank 0.

    ``identity`` (:func:`run_identity`) heads the log and must match on ``--resume``; rank 0 holds
    the folder's lock meanwhile. Returns the records in row order on the main process, None on
    the other ranks.
    """
    rank, world, state = _distributed()
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    with folder_lock(out) if rank == 0 else contextlib.nullcontext():
        log = PredictionLog(out, rank, world, identity)
        log.start(options.resume)  # every rank: all see the same files (nothing is written before the barrier)
        if state is not None:
            state.wait_for_everyone()
        _answer_pending(rows, images, answerer, log, rank, world, description)
        if state is not None:
            state.wait_for_everyone()
        return log.merge(rows) if rank == 0 else None


def _answer_pending(rows: Sequence[Row], images: LazyImages, answerer: Answerer, log: PredictionLog, rank: int,
                    world: int, description: str) -> None:
    """Ask this rank's share of the rows without an answer in the log, appending as answers come."""
    from tqdm.auto import tqdm

    done = {k: v for k, v in log.read().items() if v.get("status") == "ok"}
    check_resumed(rows, done, log.out / PREDICTIONS)
    pending = [row for row in rows if row.id not in done][rank::world]
    with tqdm(total=len(pending), desc=description, unit="question", disable=rank != 0) as bar:
        for records in answerer.answer(pending, images.take([row.index for row in pending])):
            log.append(records)
            bar.update(len(records))


def _distributed():
    """(rank, world size, accelerate state) when launched with several processes, else (0, 1, None)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1, None
    import torch
    from accelerate import PartialState

    # Without an accelerator the ranks join as CPU processes over gloo.
    state = PartialState(cpu=not torch.accelerator.is_available())
    return state.process_index, state.num_processes, state


def device_for_rank() -> str | None:
    """The device of this rank under a multi-process launch (None: load as usual)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    return str(_distributed()[2].device)


def is_main_process() -> bool:
    """True on rank 0 (or without a multi-process launch)."""
    return _distributed()[0] == 0


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages that decide a run's numbers."""
    from importlib import metadata

    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def provenance(options: RunOptions, *, model: dict[str, Any], prompt: str | None, decoding: dict[str, Any],
               dataset: dict[str, Any], rows: Sequence[Row], started: str) -> dict[str, Any]:
    """What makes a run reproducible, for results.json."""
    return {
        "name": options.name or model.get("model") or model.get("model_name"),
        "model_info": model,
        "first_prompt": prompt,
        "decoding": decoding,
        "dataset_info": dataset_info(dataset, rows),
        "packages": package_versions(),
        "started_at": started,
        "finished_at": now(),
        "resumed": options.resume,
    }


def now() -> str:
    """UTC time, ISO 8601, seconds."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


__all__ = ["IDENTITY", "LOCK_FILE", "DecodingOptions", "PredictionLog", "Row", "RunError", "RunOptions",
           "check_record", "dataset_info", "device_for_rank", "execute", "fingerprint",
           "folder_lock", "identity_difference", "is_main_process", "now", "package_versions", "provenance",
           "run_identity"]
