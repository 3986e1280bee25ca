"""The build: the release -> a Hub-ready folder of Parquet shards, dataset card and build report.

The folder is written into a temporary sibling and renamed into place at the end, so ``out``
is either the old folder or the complete new one, never half of either.

>>> build("examples/mm-skin-sample", "/tmp/mm-skin", overwrite=True).report.written["vqa"]  # doctest: +SKIP
{'test': 12, 'train': 48}
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import glob
import json
import logging
import os
import re
import secrets
import shutil
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from mm_skin.audit_sources import AuditInputError
from mm_skin.card import (
    LICENSE_FILE,
    card_context,
    license_file,
    render_dataset_card,
    start_card_imports,
)
from mm_skin.parquet import WRITE_BUDGET_BYTES, BackgroundWrites, ShardedParquetWriter, parse_size
from mm_skin.paths import is_inside
from mm_skin.release import ReleasePlan, load_release, parse_modality_map
from mm_skin.report import REPORT_FILE, VERSION_KEY, BuildReport, ReleaseError, StrictError
from mm_skin.schema import ALL_CONFIGS, MODALITIES, features_for
from mm_skin.tables import PENDING_BYTES, ROW_GROUP_BYTES, iter_instruct_tables, iter_tables

#: config -> split -> shard paths relative to the built folder
Shards = dict[str, dict[str, list[str]]]


@dataclasses.dataclass
class BuildResult:
    """What :func:`build` produced."""

    out: Path
    report: BuildReport
    shards: Shards
    seconds: float
    audit: dict[str, Any] | None = None  # the audit's report (audit.json) when built with audit=True
    audit_out: Path | None = None  # where audit.json, audit.md and near_duplicates.png were written


def _write_shards(plan: ReleasePlan, folder: Path, *, num_proc: int, max_shard_bytes: int, progress: bool) -> Shards:
    """Write every config's Parquet shards into ``folder``; count what was written in the report."""
    writers: dict[tuple[str, str], ShardedParquetWriter] = {}
    # a row group is the unit of sharding: keep several per shard
    row_group_bytes = max(1, min(ROW_GROUP_BYTES, max_shard_bytes // 4))

    def writer(cfg: str, split: str) -> ShardedParquetWriter:
        if (cfg, split) not in writers:
            (folder / cfg).mkdir(exist_ok=True)
            writers[(cfg, split)] = ShardedParquetWriter(
                folder / cfg, split, features_for(cfg), max_shard_bytes=max_shard_bytes, dedup_images=cfg == "vqa",
                row_group_bytes=row_group_bytes,
            )
        return writers[(cfg, split)]

    writes = BackgroundWrites(WRITE_BUDGET_BYTES)
    try:
        for cfg, split, table in iter_tables(plan, num_proc=num_proc, progress=progress, row_group_bytes=row_group_bytes,
                                             pending_bytes=max(row_group_bytes, PENDING_BYTES)):
            writes.submit((cfg, split), writer(cfg, split), table)
        for table in iter_instruct_tables(plan, num_proc=num_proc, progress=progress, row_group_bytes=row_group_bytes):
            writes.submit(("instruct", "train"), writer("instruct", "train"), table)
        writes.close()
        closed = {key: w.close() for key, w in sorted(writers.items())}
    except BaseException:
        writes.close(raise_failed=False)  # the first error is the one to report
        for w in writers.values():
            w.abort()
        raise

    report = plan.report
    shards: Shards = {}
    for (cfg, split), paths in closed.items():
        shards.setdefault(cfg, {})[split] = [p.relative_to(folder).as_posix() for p in paths]
        report.count_written(cfg, split, writers[(cfg, split)].rows)
    # `captions` reuses the modality folders' files: no byte is stored twice
    for m in MODALITIES:
        for split, paths in shards.get(m, {}).items():
            shards.setdefault("captions", {}).setdefault(split, []).extend(paths)
            report.count_written("captions", split, report.written[m][split])
    if "captions" in shards:
        shards["captions"] = {s: sorted(p) for s, p in shards["captions"].items()}
    if not shards:
        raise ReleaseError(f"{plan.source}: no row could be written (see the reasons above)")
    return shards


# Names written into a build folder: a stale temporary folder holding anything else is not ours.
_OUR_ENTRIES = frozenset({*ALL_CONFIGS, "assets", "README.md", LICENSE_FILE, REPORT_FILE})
logger = logging.getLogger(__name__)


class BuildTerminated(SystemExit):
    """The build got SIGTERM; its temporary folder was removed (exit status 128 + SIGTERM)."""


def _out_path(out: str | os.PathLike[str]) -> Path:
    """OUT with its parent's symlinks resolved but not its own: a symlink at OUT is refused, as
    replacing it would replace the folder it points to."""
    p = Path(os.path.abspath(out))
    if p.is_symlink():
        raise ReleaseError(f"--out {out}: is a symlink (to {os.readlink(p)}); pass a real folder, not a link to one")
    if not p.name:
        raise ReleaseError(f"--out {out}: not a folder that can be replaced; name a new or earlier build folder")
    return p.parent.resolve() / p.name


def _refuse_overlap(out: Path, inputs: Sequence[str | os.PathLike[str] | None]) -> None:
    """OUT must not be, contain, or lie inside the release, nor contain an input file."""
    for i, given in enumerate(inputs):
        if given is None:
            continue
        real = Path(given).resolve()
        if is_inside(real, out) or (i == 0 and is_inside(out, real)):
            what = "the release" if i == 0 else "an input file"
            raise ReleaseError(
                f"--out {out}: overlaps {what} {given} (building there could delete it); choose an --out outside it"
            )


def default_audit_out(out: Path) -> Path:
    """Where ``mm-skin build --audit`` writes the audit's files by default: ``OUT.audit`` beside
    OUT, outside the folder that gets pushed (only the card section goes into OUT)."""
    return out.parent / f"{out.name}.audit"


def _audit_out_path(audit: bool, audit_out: str | os.PathLike[str] | None, *, card: bool, out: Path,
                    source: str | os.PathLike[str]) -> Path | None:
    """The audit's output folder (None without ``audit``): not OUT or inside it (OUT is replaced
    and pushed whole), not the release or inside it, and not a file."""
    if not audit:
        if audit_out is not None:
            raise ReleaseError(f"--audit-out {audit_out}: given without --audit; pass --audit too (or drop --audit-out)")
        return None
    if not card:
        raise ReleaseError("audit=True needs card=True: the audit reads the configs from the card")
    path = default_audit_out(out) if audit_out is None else Path(audit_out).resolve()
    release = Path(source).resolve()
    for folder, what in ((out, "--out"), (release, "the release")):
        if is_inside(path, folder):
            raise ReleaseError(f"--audit-out {path}: inside {what} {folder}; the audit's files do not belong "
                               "there: choose a folder outside it (default: OUT.audit beside OUT)")
    if path.exists() and not path.is_dir():
        raise ReleaseError(f"--audit-out {path}: a file is there; give a folder (it is created if missing)")
    return path


def is_our_build(folder: Path) -> bool:
    """Whether ``folder`` is the output of an earlier build (its build_report.json says so)."""
    try:
        report = json.loads((folder / REPORT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(report, dict) and VERSION_KEY in report


def _check_replaceable(out: Path, *, overwrite: bool, force: bool, when: str = "") -> None:
    """Raise unless the existing ``out`` may be replaced: --overwrite, and it is empty, an
    earlier build of ours, or --force says any folder may go."""
    if not overwrite:
        raise ReleaseError(f"{out} exists{when}; pass --overwrite to replace it (nothing was changed)")
    if out.is_symlink() or not out.is_dir():
        raise ReleaseError(f"{out} exists{when} and is not a folder; remove it or choose another --out")
    if not force and any(out.iterdir()) and not is_our_build(out):
        raise ReleaseError(
            f"{out} exists{when} and is not an earlier mm-skin build (no build_report.json of ours); "
            "choose another --out, or pass --force with --overwrite to delete everything in it"
        )


def _remove_stale_temporaries(out: Path) -> None:
    """Delete ``.OUT.tmp-PID-XXXX`` folders left by builds that were killed (their PID runs no more)."""
    pattern = re.compile(rf"\.{re.escape(out.name)}\.tmp-(\d+)(?:-[0-9a-f]+)?")  # (no suffix: older builders)
    for p in out.parent.glob(f".{glob.escape(out.name)}.tmp-*"):
        m = pattern.fullmatch(p.name)
        if not m or p.is_symlink() or not p.is_dir() or _pid_alive(int(m.group(1))):
            continue
        if not {c.name for c in p.iterdir()} <= _OUR_ENTRIES:
            continue  # not laid out like our output: leave it
        shutil.rmtree(p, ignore_errors=True)
        logger.warning("mm-skin build: removed %s, left by an interrupted build (process %s no longer runs)", p, m.group(1))


def _pid_alive(pid: int) -> bool:
    # On Windows os.kill(pid, 0) is no probe: it sends CTRL_C_EVENT (0) to process group ``pid``.
    if pid == os.getpid() or os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


@contextlib.contextmanager
def _terminate_cleanly() -> Iterator[None]:
    """While the build runs, SIGTERM raises :class:`BuildTerminated` so the cleanup removes the
    temporary folder (handlers can only be set from the main thread; elsewhere SIGTERM keeps its action)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the cleanup short
        raise BuildTerminated(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _parent_locked(folder: Path) -> Iterator[None]:
    """An exclusive ``flock`` on OUT's parent folder: swaps of concurrent builds go one at a time
    (no lock file is left behind; released by the kernel if the process dies)."""
    try:
        import fcntl
    except ImportError:  # Windows: rename onto an existing folder fails there anyway
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):  # a file system without flock: the mkdir claim still holds
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _make_parent(out_path: Path, out: str | os.PathLike[str]) -> None:
    """Create OUT's parent folder and remove temporaries that killed builds left there."""
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(out_path)
    except OSError as e:
        raise ReleaseError(f"--out {out}: cannot create it ({e.strerror or e}); choose a folder you can write to") from None


def _move_into_place(tmp: Path, out: Path, *, overwrite: bool, force: bool) -> None:
    """Rename the finished ``tmp`` to ``out``, checking ``out`` again at the swap.

    ``out`` may have appeared while the build ran: it is replaced only as the start of the build
    would have allowed. The name is claimed with ``mkdir`` (fails if it exists) and ``tmp`` renamed
    onto that empty folder, so two builds to one new OUT cannot both succeed.
    """
    with _parent_locked(out.parent):
        old = None
        if os.path.lexists(out):
            _check_replaceable(out, overwrite=overwrite, force=force, when=" (it appeared while this build ran)")
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(old)
        try:
            out.mkdir()
        except FileExistsError:
            kept = f"; the previous build is kept at {old}" if old else ""
            raise ReleaseError(f"{out} was created by another process during the swap{kept}; nothing was replaced") from None
        tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _write_error(e: OSError, out: Path) -> ReleaseError:
    """One line for a write that failed (full disk, read-only file system, permissions)."""
    detail = (str(e).splitlines() or [type(e).__name__])[0]
    if e.errno in (errno.ENOSPC, errno.EDQUOT) or "No space left" in detail:
        return ReleaseError(f"--out {out}: no space left on the device while writing ({detail}); free space there "
                            "or choose an --out on another disk (the partial output was removed)")
    return ReleaseError(f"--out {out}: cannot write there ({detail}); choose a writable --out")


def build(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str] = "mm-skin",
    *,
    test_csv: str | os.PathLike[str] | None = None,
    instruct_json: Sequence[str | os.PathLike[str]] | None = None,
    modality_map: dict[str, str] | Sequence[str] | None = None,
    strict: bool = False,
    overwrite: bool = False,
    force: bool = False,
    num_proc: int | None = None,
    max_shard_size: str | int = "500MB",
    progress: bool = False,
    card: bool = True,
    audit: bool = False,
    audit_out: str | os.PathLike[str] | None = None,
) -> BuildResult:
    """Build the Hub-ready MM-Skin folder ``out`` from the release at ``source``.

    Writes one folder per config with ``{split}-NNNNN-of-NNNNN.parquet`` shards, ``README.md``
    (the dataset card, its YAML lists the configs), ``build_report.json`` and
    ``assets/statistics.png``, into a temporary sibling renamed to ``out`` at the end.
    An existing ``out`` is replaced only with ``overwrite``, and only when it is empty or an
    earlier build (or ``force``); ``out`` may not overlap the release. Raises
    :class:`ReleaseError` (bad input, unwritable ``out``) or :class:`StrictError` (``strict`` and
    some rows would be left out or carry a warning); ``out`` is then untouched.

    ``audit``: run :func:`mm_skin.audit.audit` on the finished folder before it replaces ``out``
    and put its summary on the card ("Duplicates and overlap"); its audit.json, audit.md and
    near_duplicates.png go to ``audit_out`` (default :func:`default_audit_out`: ``OUT.audit``
    beside ``out``, never inside it), fingerprinted in ``num_proc`` processes.
    """
    t0 = time.perf_counter()
    out_path = _out_path(out)
    _refuse_overlap(out_path, [source, test_csv, *(instruct_json or [])])
    audit_path = _audit_out_path(audit, audit_out, card=card, out=out_path, source=source)
    if os.path.lexists(out_path):
        _check_replaceable(out_path, overwrite=overwrite, force=force)
    plan = load_release(source, test_csv=test_csv, instruct_json=instruct_json, modality_map=parse_modality_map(modality_map or []))
    try:
        max_shard_bytes = parse_size(max_shard_size)
    except ValueError as e:
        raise ReleaseError(f"--max-shard-size: {e}") from None
    _make_parent(out_path, out)
    num_proc = num_proc or min(4, os.cpu_count() or 1)
    with replacing(out_path, overwrite=overwrite, force=force) as tmp:
        shards, context = _write_folder(plan, tmp, strict=strict, card=card, progress=progress,
                                        num_proc=num_proc, max_shard_bytes=max_shard_bytes)
        audited = None
        if audit_path is not None and context is not None:
            audited = _audit_into_card(tmp, context, name=str(out_path), out=audit_path, num_proc=num_proc,
                                       progress=progress)
    return BuildResult(out=out_path, report=plan.report, shards=shards, seconds=time.perf_counter() - t0,
                       audit=audited, audit_out=audit_path)


def _write_folder(plan: ReleasePlan, tmp: Path, *, strict: bool, card: bool, progress: bool, num_proc: int,
                  max_shard_bytes: int) -> tuple[Shards, dict[str, Any] | None]:
    """Shards, build_report.json and the card into ``tmp``; :class:`StrictError` under ``strict``.
    Returns the shards and the card's template context (None without a card)."""
    report = plan.report
    card_imports = start_card_imports() if card else None
    shards = _write_shards(plan, tmp, num_proc=num_proc, max_shard_bytes=max_shard_bytes, progress=progress)
    if strict and (report.skipped or report.warnings):
        raise StrictError(
            f"--strict: {len(report.skipped)} rows would not be written and {len(report.written_warnings())} written rows have warnings:\n"
            + report.summary()
        )
    report.write(tmp)
    if card_imports is None:
        return shards, None
    card_imports.join()
    context = card_context(tmp, shards, report)
    card = render_dataset_card(context)
    (tmp / "README.md").write_text(card, encoding="utf-8")
    (tmp / LICENSE_FILE).write_text(license_file(card), encoding="utf-8")  # the card's license_link
    return shards, context


def _audit_into_card(tmp: Path, context: dict[str, Any], *, name: str, out: Path, num_proc: int,
                     progress: bool) -> dict[str, Any]:
    """Audit the finished folder ``tmp`` (the audit reads its configs from the card just written),
    write the audit's files into ``out``, and write the card again with the audit's section."""
    # imported here: the hashing and MinHash libraries take ~1 s to import, for builds with --audit only
    from mm_skin.audit import audit

    try:
        found = audit(tmp, out=out, num_proc=num_proc, progress=progress, name=name)
    except AuditInputError as e:
        raise ReleaseError(f"--audit: {e}") from None
    except OSError as e:  # not the build's own --out: say which folder could not be written
        raise ReleaseError(f"--audit-out {out}: the audit could not write its files ({e.strerror or e}); "
                           "choose a writable folder") from None
    (tmp / "README.md").write_text(render_dataset_card(context, found["summary"]), encoding="utf-8")
    return found


@contextlib.contextmanager
def replacing(out_path: Path, *, overwrite: bool, force: bool) -> Iterator[Path]:
    """A new temporary folder beside ``out_path`` that replaces it when the block ends without error.

    SIGTERM and errors remove the temporary folder (``out_path`` stays as it was); write errors
    become one-line :class:`ReleaseError`. ``out_path`` was checked by the caller
    (:func:`_out_path`, :func:`_check_replaceable`) and is checked again at the swap.
    """
    tmp: Path | None = None
    with _terminate_cleanly():
        try:
            # unique per process AND call: builds in threads of one process do not share it
            tmp = out_path.parent / f".{out_path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
            tmp.mkdir()
            yield tmp
            _move_into_place(tmp, out_path, overwrite=overwrite, force=force)
        except BaseException as e:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(e, BuildTerminated):
                logger.warning("mm-skin build: terminated (SIGTERM); removed the unfinished %s", tmp)
            if isinstance(e, OSError):
                raise _write_error(e, out_path) from None
            raise


@contextlib.contextmanager
def guarded_output(out: str | os.PathLike[str], inputs: Sequence[str | os.PathLike[str] | None], *,
                   overwrite: bool, force: bool) -> Iterator[Path]:
    """:func:`replacing` with the checks of :func:`build`, for any other builder of a folder.

    ``out`` may not overlap ``inputs`` (the first is the source folder); an existing ``out`` is
    replaced only with ``overwrite`` (and only an earlier build unless ``force``). The block must
    write a build report (:data:`REPORT_FILE`) so that a later ``--overwrite`` recognises it.
    """
    out_path = _out_path(out)
    _refuse_overlap(out_path, list(inputs))
    if os.path.lexists(out_path):
        _check_replaceable(out_path, overwrite=overwrite, force=force)
    _make_parent(out_path, out)
    with replacing(out_path, overwrite=overwrite, force=force) as tmp:
        yield tmp
