"""``mm-skin audit``: duplicate images and texts, and how much of each test split is also in train.

MM-Skin's official split is by QA pair, not by image, and textbook figures are reused across
chapters and editions (resized, re-compressed, cropped). The audit reads a built folder or a Hub
dataset (plus any ``--against`` image folders, e.g. public classification test sets) once, as a
stream, keeping only fingerprints, and finds:

- exact duplicate images: same bytes (sha256), or same decoded pixels under different bytes;
- near-duplicate images: perceptual hashes (:mod:`mm_skin.image_hashes`: how the hashes and the
  threshold were chosen, and what they were measured to find);
- duplicate and near-duplicate questions, answers, QA pairs and captions
  (:mod:`mm_skin.text_duplicates`);
- per split pair (e.g. test vs train): test images / QA pairs with the same image, an exact or a
  near twin in train, the same QA text in train, or the same question on a twin image in train.

Duplicates are grouped into clusters (:mod:`mm_skin.audit_clusters`), each with a few example
pairs, so memory stays linear in the number of images however many copies there are.
It writes ``audit.json`` (every cluster and its example pairs), ``audit.md`` and ``near_duplicates.png`` (the closest
near-duplicate pairs side by side) into ``out``. Example::

    >>> summary = audit("mm-skin-built", against=["ham10000-test"], out="audit", num_proc=4)
    >>> summary["splits"]["test vs train"]["images"]["any_twin"]          # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import multiprocessing
import os
import sys
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from mm_skin import audit_sources as sources
from mm_skin import image_hashes
from mm_skin.audit_clusters import Clusters, ImagePair, UnionFind, image_clusters
from mm_skin.audit_clusters import is_against as _is_against
from mm_skin.audit_report import write_outputs
from mm_skin.audit_sources import AuditInputError, SourceRow
from mm_skin.benchmarks.spec import normalise_label
from mm_skin.cli import ExitCode, print_problem
from mm_skin.hub import is_hub_id
from mm_skin.image_hashes import Fingerprint
from mm_skin.text_duplicates import NEAR_JACCARD, TextIndex, normalise_text

_CHUNK = 8  # images per task sent to a worker process (amortises the pickling round trip)
TEXT_FIELDS = ("question", "answer", "qa", "caption")


class ImageIndex:
    """Fingerprints of every distinct image seen, and where each image id occurs.

    An image *key* is the dataset's ``image_id`` (the same figure in ``vqa`` and in ``clinical``
    is one key) or ``against:NAME/relative/path`` for an ``--against`` image. Bytes are hashed
    once per distinct content; fingerprints are computed in ``num_proc`` processes while reading
    goes on, with at most ``2 * num_proc * _CHUNK`` images in flight, so memory stays flat.
    """

    def __init__(self, num_proc: int = 1) -> None:
        self.where: dict[str, set[str]] = defaultdict(set)  # key -> {"vqa/train", ...}
        self.sha_of: dict[str, str] = {}  # key -> sha256 of its bytes
        self.fingerprints: dict[str, Fingerprint] = {}  # sha256 -> fingerprint
        self.errors: dict[str, str] = {}  # sha256 or key -> why it could not be fingerprinted
        self.conflicts: list[dict[str, Any]] = []  # one image id, different bytes
        self._seen: set[str] = set()
        self._chunk: list[tuple[str, bytes]] = []
        self._in_flight: deque[tuple[list[str], Future]] = deque()
        self._max_in_flight = 2 * num_proc
        self._pool = (ProcessPoolExecutor(num_proc, mp_context=multiprocessing.get_context("spawn"))
                      if num_proc > 1 else None)

    def add(self, key: str, label: str, data: bytes | None) -> None:
        """Record image ``key`` at ``label`` (``config/split``) with its bytes; fingerprint if new."""
        self.where[key].add(label)
        if data is None:
            self.errors.setdefault(key, "no image bytes in the row")
            return
        sha = hashlib.sha256(data).hexdigest()
        known = self.sha_of.setdefault(key, sha)
        if known != sha:
            self.conflicts.append({"image_id": key, "in": label, "sha256": sha, "first_sha256": known})
        if sha in self._seen:
            return
        self._seen.add(sha)
        if self._pool is None:
            self._store(sha, image_hashes.fingerprint_or_error(data))
            return
        self._chunk.append((sha, data))
        if len(self._chunk) >= _CHUNK:
            self._submit()

    def _submit(self) -> None:
        shas = [sha for sha, _ in self._chunk]
        future = self._pool.submit(_fingerprint_chunk, [data for _, data in self._chunk])
        self._in_flight.append((shas, future))
        self._chunk = []
        while len(self._in_flight) > self._max_in_flight:
            self._collect()

    def _collect(self) -> None:
        shas, future = self._in_flight.popleft()
        for sha, result in zip(shas, future.result(), strict=True):
            self._store(sha, result)

    def _store(self, sha: str, result: Fingerprint | str) -> None:
        if isinstance(result, str):
            self.errors[sha] = result
        else:
            self.fingerprints[sha] = result

    def finish(self) -> None:
        """Wait for every fingerprint still being computed and stop the worker processes."""
        if self._pool is None:
            return
        if self._chunk:
            self._submit()
        while self._in_flight:
            self._collect()
        self._pool.shutdown()
        self._pool = None


def _fingerprint_chunk(chunk: list[bytes]) -> list[Fingerprint | str]:
    return [image_hashes.fingerprint_or_error(data) for data in chunk]


@dataclasses.dataclass
class QARecord:
    """What the split summary needs of one QA pair: where it is, its image, its texts."""

    split: str
    image: str
    question: str  # normalised
    qa: str  # normalised "question | answer"


@dataclasses.dataclass
class Collected:
    """Everything one pass over the sources keeps: fingerprints, text indexes, QA records."""

    images: ImageIndex
    texts: dict[str, TextIndex]
    qa: list[QARecord]
    rows: dict[str, int]  # "config/split" -> rows read
    labels: dict[str, set[tuple[str, str]]] = dataclasses.field(default_factory=dict)  # key -> {(config, class)}


def image_key(row: SourceRow, image_id: str) -> str:
    """The key of an image: its id in the dataset, ``against:NAME/path`` for a folder image."""
    return f"{row.config}/{image_id}" if row.config.startswith("against:") else image_id


def label_of(row: SourceRow) -> str:
    """Where a row is: ``config/split``, or ``against:NAME`` for an ``--against`` folder."""
    return row.config if not row.split else f"{row.config}/{row.split}"


def collect(rows: Iterable[SourceRow], num_proc: int = 1, total: int | None = None,
            progress: bool = True) -> Collected:
    """Read every row once: fingerprint images (in ``num_proc`` processes), index texts."""
    images = ImageIndex(num_proc)
    texts = {name: TextIndex(name) for name in TEXT_FIELDS}
    qa: list[QARecord] = []
    labels: dict[str, set[tuple[str, str]]] = defaultdict(set)
    counts: dict[str, int] = defaultdict(int)
    bar = tqdm(total=total, desc="audit: reading and hashing", unit="row", disable=not progress,
               file=sys.stderr)
    try:
        for row in rows:
            label = label_of(row)
            counts[label] += 1
            where = f"{label}#{row.row}"
            for image_id, data in zip(row.image_ids, row.images, strict=True):
                images.add(image_key(row, image_id), label, data)
            for question, answer in row.qa:
                texts["question"].add(question, where)
                texts["answer"].add(answer, where)
                both = texts["qa"].add(f"{question} | {answer}", where)
                first = image_key(row, row.image_ids[0]) if row.image_ids else ""
                qa.append(QARecord(row.split, first, normalise_text(question), both))
            if row.label is not None and row.image_ids:
                labels[image_key(row, row.image_ids[0])].add((row.config, row.label))
            for caption in row.captions:
                texts["caption"].add(caption, where)
            bar.update()
    finally:
        images.finish()
        bar.close()
    return Collected(images, texts, qa, dict(counts), dict(labels))


def _groups(images: ImageIndex) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """sha256 -> keys with those bytes; pixel digest -> distinct sha256s with those pixels."""
    keys_of_sha: dict[str, list[str]] = defaultdict(list)
    for key, sha in images.sha_of.items():
        keys_of_sha[sha].append(key)
    shas_of_pixels: dict[str, list[str]] = defaultdict(list)
    for sha, fingerprint in images.fingerprints.items():
        shas_of_pixels[fingerprint.pixels].append(sha)
    return keys_of_sha, shas_of_pixels


def find_clusters(images: ImageIndex, threshold: int = image_hashes.NEAR_THRESHOLD) -> Clusters:
    """Exact (same bytes or pixels) and near-duplicate clusters of every image key
    (:mod:`mm_skin.audit_clusters`: union-find over streamed links, memory linear in images)."""
    keys_of_sha, shas_of_pixels = _groups(images)
    perceptual = {shas[0]: images.fingerprints[shas[0]].perceptual for shas in shas_of_pixels.values()}
    return image_clusters(keys_of_sha, shas_of_pixels, perceptual, threshold)


def pair_json(images: ImageIndex, pair: ImagePair) -> dict[str, Any]:
    """One pair as audit.json writes it: both image ids, where each is, kind, match, distance."""
    def side(key: str) -> dict[str, Any]:
        return {"image_id": _shown_id(key), "in": sorted(images.where[key])}

    return {"kind": pair.kind, "match": pair.match, "distance": pair.distance,
            "a": side(pair.a), "b": side(pair.b)}


def _splits_of(labels: Iterable[str]) -> set[str]:
    return {label.rsplit("/", 1)[1] for label in labels if not _is_against(label)}


def _rooted(where: dict[str, set[str]], union: UnionFind, splits: Iterable[str]) -> dict[str, set[str]]:
    """cluster root -> the keys of ``splits`` in that cluster."""
    found: dict[str, set[str]] = defaultdict(set)
    wanted = set(splits)
    for key, labels in where.items():
        if _splits_of(labels) & wanted:
            found[union.root(key)].add(key)
    return found


def split_summary(collected: Collected, clusters: Clusters, test: str, train: str,
                  near_qa: dict[str, set[str]]) -> dict[str, Any]:
    """How many ``test`` images and QA pairs have a twin in ``train``.

    Images: the same image id in both splits (the official split is by QA pair), an exact twin
    under another id, a near twin (and, in ``train_twins_of_test``, the train images that are
    those exact / near twins under another id). QA pairs: whose image is (or has a twin) in train; whose
    question is asked in train about the same image or a twin; whose normalised question +
    answer text is in train (on any image), exactly or nearly.
    """
    where = collected.images.where
    test_keys, train_keys = ({k for k, labels in where.items() if name in _splits_of(labels)}
                             for name in (test, train))
    same = test_keys & train_keys
    exact_train, near_train = (_rooted(where, union, [train]) for union in (clusters.exact, clusters.near))
    exact = {k for k in test_keys - same if exact_train.get(clusters.exact.root(k))}
    near = {k for k in test_keys - same - exact if near_train.get(clusters.near.root(k))}
    # the train side of those twins: what `image_in_test` (same id) does not filter out
    # over distinct clusters: a cluster of many test and many train copies is walked once, not per pair
    exact_roots, near_roots = ({union.root(k) for k in test_keys} for union in (clusters.exact, clusters.near))
    train_exact = set().union(*(exact_train.get(r, ()) for r in exact_roots)) - test_keys
    train_near = set().union(*(near_train.get(r, ()) for r in near_roots)) - test_keys - train_exact
    leaked = same | exact | near
    cluster = {key: clusters.near.root(key) for key in where}
    train_qa = {r.qa for r in collected.qa if r.split == train}
    train_questions = {(cluster[r.image], r.question) for r in collected.qa if r.split == train and r.image}
    test_qa = [r for r in collected.qa if r.split == test]
    return {
        "images": {"test": len(test_keys), "same_image_id": len(same), "exact_twin": len(exact),
                   "near_twin": len(near), "any_twin": len(leaked)},
        "qa_pairs": {
            "test": len(test_qa),
            "image_in_train": sum(r.image in leaked for r in test_qa),
            "same_question_on_same_or_twin_image": sum(
                (cluster.get(r.image), r.question) in train_questions for r in test_qa),
            "same_qa_text": sum(r.qa in train_qa for r in test_qa),
            "near_qa_text": sum(r.qa not in train_qa and bool(near_qa.get(r.qa, set()) & train_qa)
                                for r in test_qa),
        },
        "test_image_ids_in_train": sorted(leaked),
        "train_twins_of_test": {"exact": sorted(train_exact), "near": sorted(train_near)},
    }


def against_summary(collected: Collected, clusters: Clusters, folder: sources.AgainstFolder) -> dict[str, Any]:
    """How many images of an ``--against`` folder have an exact twin in each dataset split, and
    how many have only a near one (a twin in the same near cluster but none in the exact one)."""
    where = collected.images.where
    label = f"against:{folder.name}"
    keys = [key for key, labels in where.items() if label in labels]
    twin_in: dict[str, dict[str, int]] = {}
    for split in sorted(_splits_of(itertools.chain.from_iterable(where.values()))):
        exact, near = (_rooted(where, union, [split]) for union in (clusters.exact, clusters.near))
        has_exact = [key for key in keys if exact.get(clusters.exact.root(key))]
        twin_in[split] = {"exact": len(has_exact),
                          "near": sum(bool(near.get(clusters.near.root(key))) for key in keys) - len(has_exact)}
    dataset_ids = {key for key in where if not _is_against(key)}
    same_id = sum(_shown_id(key) in dataset_ids for key in keys)
    return {"folder": str(folder.root), "images": folder.images, "same_image_id": same_id, "skipped": folder.skipped,
            "twin_in_split": twin_in}


def text_findings(index: TextIndex) -> dict[str, Any]:
    """Exact groups (with every row) and near pairs (with their Jaccard) of one text field."""
    return {
        "exact_groups": [{"text": text, "rows": len(rows), "where": rows}
                         for text, rows in index.exact_groups()],
        "near_pairs": [{"a": a, "b": b, "jaccard": jaccard, "rows_a": len(index.rows[a]),
                        "rows_b": len(index.rows[b])} for a, b, jaccard in index.near_pairs()],
    }


def _open_dataset(dataset: str) -> tuple[Callable[[], Iterator[SourceRow]], int | None]:
    """A function streaming the dataset's rows, and their number when known without reading."""
    path = Path(dataset)
    if path.exists():
        if not path.is_dir():
            raise AuditInputError(f"{dataset}: not a folder; give a folder built by `mm-skin build` or a Hub id")
        splits = sources.folder_splits(path)
        return (lambda: sources.iter_folder(splits)), sources.count_folder_rows(splits)
    if is_hub_id(dataset):
        configs = sources.hub_configs(dataset)
        return (lambda: sources.iter_hub(dataset, configs)), None
    raise AuditInputError(f"{dataset}: no such folder, and not a Hub id (namespace/name); give a "
                          "folder built by `mm-skin build` or a Hub dataset id")


def audit(dataset: str | os.PathLike[str], against: Iterable[str | os.PathLike[str]] = (),
          out: str | os.PathLike[str] = "audit", num_proc: int = 1, progress: bool = True,
          *, name: str | None = None) -> dict[str, Any]:
    """Audit ``dataset`` (a built folder or a Hub id) and ``against`` folders; write into ``out``.

    Returns the report audit.json holds (``summary``, ``image_pairs``, ``texts``, ...); its
    ``dataset`` is ``name`` when given (``mm-skin build --audit`` audits a temporary folder
    and names the folder it becomes). Raises :class:`~mm_skin.audit_sources.AuditInputError`
    (one line) on bad input.
    """
    if num_proc < 1:
        raise AuditInputError(f"--num-proc {num_proc}: give 1 or more processes")
    if Path(out).exists() and not Path(out).is_dir():
        raise AuditInputError(f"--out {out}: a file is there; give a folder (it is created if missing)")
    rows_of, total = _open_dataset(os.fspath(dataset))
    folders = [sources.walk_against(folder) for folder in against]
    for index, folder in enumerate(folders):  # two folders named alike stay apart
        if any(other.name == folder.name for other in folders[:index]):
            folder.name = f"{folder.name}-{index + 1}"

    def all_rows() -> Iterator[SourceRow]:
        yield from rows_of()
        for folder in folders:
            yield from sources.iter_against(folder)

    if total is not None:
        total += sum(folder.images for folder in folders)
    collected = collect(all_rows(), num_proc, total, progress)
    clusters = find_clusters(collected.images)
    pairs = clusters.pairs()
    texts = {name: text_findings(index) for name, index in collected.texts.items()}
    near_qa: dict[str, set[str]] = defaultdict(set)
    for pair in texts["qa"]["near_pairs"]:
        near_qa[pair["a"]].add(pair["b"])
        near_qa[pair["b"]].add(pair["a"])
    splits = _splits_of(itertools.chain.from_iterable(collected.images.where.values()))
    report = {
        "dataset": name or os.fspath(dataset),
        "rows": collected.rows,
        "images": {"ids": sum(not _is_against(k) for k in collected.images.where),
                   "distinct_contents": len(collected.images.fingerprints)},
        "thresholds": {"image_near_max_distance": image_hashes.NEAR_THRESHOLD,
                       "image_hash_bits": 128, "text_near_min_jaccard": NEAR_JACCARD},
        "summary": {"splits": {f"{test} vs train": split_summary(collected, clusters, test, "train", near_qa)
                               for test in sorted(splits - {"train"}) if "train" in splits},
                    "against": {folder.name: against_summary(collected, clusters, folder) for folder in folders}},
        "image_clusters": cluster_json(collected.images, clusters),
        "image_pairs": [pair_json(collected.images, pair) for pair in pairs],
        "texts": texts,
        "label_conflicts": label_conflicts(collected, clusters),
        "errors": _errors(collected.images),
        "conflicts": collected.images.conflicts,
    }
    write_outputs(Path(out), report, lambda keys: fetch_images(all_rows(), keys),
                  [(pair.a, pair.b, pair.distance) for pair in pairs if pair.kind == "near"])
    return report


def _shown_id(key: str) -> str:
    """An image key as audit.json shows it (an --against image without its ``against:NAME/``)."""
    return key.split("/", 1)[1] if _is_against(key) else key


def label_conflicts(collected: Collected, clusters: Clusters) -> list[dict[str, Any]]:
    """Images (one id, or exact twins by bytes or pixels) labelled with two different classes.

    ``within`` a config (one image under two labels of one label set), or ``across`` an
    ``--against`` folder and the dataset (spellings compared by
    :func:`~mm_skin.benchmarks.spec.normalise_label`; label sets that name other things, e.g.
    DDI's malignancy vs a diagnosis, differ by design: judge them).
    """
    groups: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for key, labels in collected.labels.items():
        for config, label in labels:
            groups[clusters.exact.root(key)].append((key, config, label))
    found = []
    for members in groups.values():
        by_config: dict[str, set[str]] = defaultdict(set)
        for _, config, label in members:
            by_config[config].add(label)
        within = sorted(c for c, labels in by_config.items() if len(labels) > 1)
        against = {normalise_label(lb) for c, labels in by_config.items() if _is_against(c) for lb in labels}
        ours = {normalise_label(lb) for c, labels in by_config.items() if not _is_against(c) for lb in labels}
        across = bool(against and ours and not against & ours)
        if within or across:
            found.append({"scope": "within" if within else "across", "configs": within,
                          "images": [{"image_id": _shown_id(key), "config": config, "label": label}
                                     for key, config, label in sorted(members)]})
    return sorted(found, key=lambda c: c["images"][0]["image_id"])


def cluster_json(images: ImageIndex, clusters: Clusters) -> list[dict[str, Any]]:
    """Each cluster holding a dataset image: kind (exact when every member has the same bytes or
    pixels), size, member ids and where each is; largest first. Its example pairs are in ``image_pairs``."""
    out = []
    for root, keys in clusters.members().items():
        if all(_is_against(key) for key in keys):
            continue
        kind = "exact" if len({clusters.exact.root(key) for key in keys}) == 1 else "near"
        out.append({"kind": kind, "size": len(keys), "example_pairs": len(clusters.examples.get(root, [])),
                    "images": [{"image_id": _shown_id(key), "in": sorted(images.where[key])} for key in keys]})
    return sorted(out, key=lambda c: (-c["size"], c["images"][0]["image_id"]))


def _errors(images: ImageIndex) -> list[dict[str, Any]]:
    """Images that could not be fingerprinted: id, where, why (none is dropped silently)."""
    errors = []
    for key, labels in images.where.items():
        reason = images.errors.get(key) or images.errors.get(images.sha_of.get(key, ""))
        if reason:
            errors.append({"image_id": key, "in": sorted(labels), "error": reason})
    return errors


def fetch_images(rows: Iterable[SourceRow], keys: set[str]) -> dict[str, bytes]:
    """The bytes of the images ``keys`` (a second pass that stops once all are found)."""
    found: dict[str, bytes] = {}
    for row in rows:
        for image_id, data in zip(row.image_ids, row.images, strict=True):
            key = image_key(row, image_id)
            if key in keys and data is not None:
                found.setdefault(key, data)
        if len(found) == len(keys):
            break
    return found


@dataclasses.dataclass(kw_only=True)
class AuditOptions:
    """Options of ``mm-skin audit``."""

    dataset: str = dataclasses.field(metadata={
        "positional": True, "metavar": "DATASET",
        "help": "a folder built by `mm-skin build`, or a Hub dataset id (namespace/name)"})
    against: list[str] = dataclasses.field(default_factory=list, metadata={
        "metavar": "FOLDER", "help": "image folders to look for twins in (e.g. public test sets)"})
    out: str = dataclasses.field(default="audit", metadata={
        "help": "folder for audit.json, audit.md and near_duplicates.png"})
    num_proc: int = dataclasses.field(default=1, metadata={
        "help": "processes that fingerprint images"})


def run_audit_command(options: AuditOptions) -> int:
    """Run ``mm-skin audit``; bad input is one line on stderr and exit code 2."""
    try:
        report = audit(options.dataset, options.against, options.out, options.num_proc)
    except AuditInputError as error:
        print_problem(error)
        return int(ExitCode.BAD_INPUT)
    print(summary_line(report, options.out))
    return int(ExitCode.OK)


def summary_line(report: dict[str, Any], out: str | os.PathLike[str]) -> str:
    """The one line both commands print after an audit: pairs found, unreadable images, where."""
    clusters = report["image_clusters"]
    near = sum(cluster["kind"] == "near" for cluster in clusters)
    images = sum(cluster["size"] for cluster in clusters)
    return (f"audit: {len(clusters) - near} exact and {near} near-duplicate image clusters ({images} images), "
            f"{len(report.get('label_conflicts') or [])} label conflicts, "
            f"{len(report['errors'])} unreadable images; see {Path(out) / 'audit.md'}")
