"""Where the audit reads from: a built folder, a Hub dataset, and plain image folders (``--against``).

Every source is read as a stream of :class:`SourceRow` (image bytes undecoded, plus the row's
texts), a batch of Parquet rows at a time, so memory does not grow with the dataset.

- A built folder: the ``configs`` of its README.md front matter name the Parquet files of each
  split (the same files ``load_dataset(folder, config)`` reads); pyarrow reads them directly, no
  Arrow cache is written. Every path must resolve inside the folder and be a regular file.
- A Hub id: ``datasets.load_dataset(id, config, streaming=True)`` with the image columns cast to
  ``Image(decode=False)``, so the bytes arrive as stored, never decoded and re-encoded.
- An ``--against`` folder: its image files (regular files only, symbolic links skipped and
  counted), walked without leaving the folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import yaml

from mm_skin.paths import UnsafePathError, is_inside, resolve_inside

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif"})
_BATCH_ROWS = 64  # Parquet rows per read: a few MB of image bytes in memory at a time


class AuditInputError(Exception):
    """Bad audit input; the message is one line naming the path / value and the fix."""


@dataclasses.dataclass
class SourceRow:
    """One row of one split of one config (or one image of an ``--against`` folder)."""

    config: str  # config name, or "against:NAME" for an --against folder
    split: str  # split name ("" for an --against folder)
    row: int  # 0-based row number in that split (file order)
    image_ids: list[str]
    images: list[bytes | None]  # undecoded bytes, parallel to image_ids (None: missing)
    qa: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (question, answer)
    captions: list[str] = dataclasses.field(default_factory=list)
    label: str | None = None  # the class name of a classification row (``label`` ClassLabel)


@dataclasses.dataclass
class AgainstFolder:
    """The image files of one ``--against`` folder, and what was skipped while walking it; or,
    for a built folder (one with a card, e.g. ``mm-skin benchmark build``), its default config's
    Parquet files (``splits``) and row count."""

    name: str
    root: Path
    files: list[Path]
    skipped: dict[str, int]  # reason -> count (symbolic link, not an image file, ...)
    splits: dict[tuple[str, str], list[Path]] | None = None
    rows: int = 0

    @property
    def images(self) -> int:
        """How many images the folder holds (rows of a built folder)."""
        return self.rows if self.splits is not None else len(self.files)


def _image_id(value: dict[str, Any] | None, fallback: str) -> str:
    path = (value or {}).get("path")
    return Path(path).stem if path else fallback


def _texts_of_messages(messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(question, answer) for each user turn followed by an assistant turn of a chat."""
    pairs: list[tuple[str, str]] = []
    question: str | None = None
    for message in messages or []:
        text = " ".join(part.get("text") or "" for part in message.get("content") or []
                        if part.get("type") == "text").strip()
        if message.get("role") == "user":
            question = text
        elif message.get("role") == "assistant" and question is not None:
            pairs.append((question, text))
            question = None
    return pairs


def source_row(config: str, split: str, index: int, record: dict[str, Any],
               label_names: list[str] | None = None) -> SourceRow:
    """A :class:`SourceRow` from one dataset record (image columns undecoded: ``{bytes, path}``);
    ``label_names``: the class names of its ``label`` ClassLabel column."""
    if "images" in record:  # the instruct config: a list of images and a chat
        images = record["images"] or []
        ids = [_image_id(image, f"{config}/{split}/{index}/{k}") for k, image in enumerate(images)]
        data = [(image or {}).get("bytes") for image in images]
        return SourceRow(config, split, index, ids, data, qa=_texts_of_messages(record.get("messages")))
    image = record.get("image")
    image_id = record.get("image_id") or _image_id(image, f"{config}/{split}/{index}")
    row = SourceRow(config, split, index, [image_id], [(image or {}).get("bytes")])
    if record.get("question") is not None:
        row.qa.append((record["question"], record.get("answer") or ""))
    if record.get("caption") is not None:
        row.captions.append(record["caption"])
    label = record.get("label")
    if label_names and isinstance(label, int) and 0 <= label < len(label_names):
        row.label = label_names[label]
    return row


def parquet_label_names(path: Path) -> list[str] | None:
    """The class names of a Parquet file's ``label`` ClassLabel (from the features ``datasets``
    stores in the schema metadata), or None."""
    import datasets

    try:
        label = datasets.Features.from_arrow_schema(pq.read_schema(path)).get("label")
    except (ValueError, KeyError, TypeError):  # metadata written by something else
        return None
    return list(label.names) if isinstance(label, datasets.ClassLabel) else None


def _inside(root: Path, relative: str, what: str) -> list[Path]:
    """The regular files ``relative`` (a path or glob) names inside ``root``; one-line error else."""
    try:
        literal = resolve_inside(root, relative, what="data file paths", where="the folder")
    except UnsafePathError as reason:
        raise AuditInputError(f"{root / 'README.md'}: data file {relative!r} of {what} is outside the "
                              f"folder ({reason}); rebuild the folder with `mm-skin build`") from None
    matches = sorted(root.glob(relative)) if any(c in relative for c in "*?[") else [literal]
    files = []
    for path in matches:
        resolved = path.resolve()
        if not is_inside(resolved, root) or not resolved.is_file():
            raise AuditInputError(f"{root / 'README.md'}: data file {relative!r} of {what} is not a "
                                  "regular file inside the folder; rebuild the folder with `mm-skin build`")
        files.append(resolved)
    if not files:
        raise AuditInputError(f"{root / 'README.md'}: no file matches {relative!r} of {what}; "
                              "rebuild the folder with `mm-skin build`")
    return files


def folder_splits(folder: Path) -> dict[tuple[str, str], list[Path]]:
    """(config, split) -> Parquet files, from the ``configs`` of ``folder/README.md``."""
    from huggingface_hub import metadata_load  # the card's YAML header, read as the Hub reads it

    root = folder.resolve()
    readme = root / "README.md"
    if not readme.is_file():
        raise AuditInputError(f"{folder}: no README.md; give a folder built by `mm-skin build` or a Hub id")
    try:
        configs = (metadata_load(readme) or {}).get("configs") or []
    except (ValueError, yaml.YAMLError) as error:  # ValueError: not UTF-8, or not a mapping
        raise AuditInputError(f"{readme}: unreadable front matter ({error}); rebuild the folder") from None
    splits: dict[tuple[str, str], list[Path]] = {}
    for config in configs:
        name = config.get("config_name", "default")
        for entry in config.get("data_files") or []:
            paths = entry.get("path")
            for relative in [paths] if isinstance(paths, str) else paths or []:
                where = f"config {name!r} split {entry.get('split')!r}"
                splits.setdefault((name, entry.get("split", "train")), []).extend(
                    _inside(root, str(relative), where))
    if not splits:
        raise AuditInputError(f"{readme}: no `configs` with data files; rebuild the folder with `mm-skin build`")
    return splits


def count_folder_rows(splits: dict[tuple[str, str], list[Path]]) -> int:
    """Rows in all the Parquet files (from their footers; nothing else is read)."""
    return sum(pq.ParquetFile(path).metadata.num_rows for paths in splits.values() for path in paths)


def iter_folder(splits: dict[tuple[str, str], list[Path]]) -> Iterator[SourceRow]:
    """The rows of a built folder, a batch of rows at a time."""
    for (config, split), paths in splits.items():
        index = 0
        for path in paths:
            names = parquet_label_names(path)
            for batch in pq.ParquetFile(path).iter_batches(batch_size=_BATCH_ROWS):
                for record in batch.to_pylist():
                    yield source_row(config, split, index, record, names)
                    index += 1


@contextlib.contextmanager
def _hub_errors(repo_id: str) -> Iterator[None]:
    """A Hub dataset that cannot be reached or read becomes one :class:`AuditInputError` line."""
    import datasets

    try:
        yield
    except (OSError, datasets.exceptions.DatasetNotFoundError, ValueError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise AuditInputError(f"{repo_id}: could not read it from the Hub ({first}); check the id, "
                              "your access (HF_TOKEN) and the connection") from None


def hub_configs(repo_id: str) -> list[str]:
    """The config names of a Hub dataset (asked first, so a wrong id fails before any work)."""
    import datasets  # only for Hub ids: a built folder is read with pyarrow alone

    with _hub_errors(repo_id):
        return datasets.get_dataset_config_names(repo_id)


def iter_hub(repo_id: str, configs: list[str]) -> Iterator[SourceRow]:
    """The rows of a Hub dataset, streamed config by config, images left undecoded."""
    import datasets

    with _hub_errors(repo_id):
        for config in configs:
            for split, stream in datasets.load_dataset(repo_id, config, streaming=True).items():
                for column, feature in (stream.features or {}).items():
                    if isinstance(feature, datasets.Image):
                        stream = stream.cast_column(column, datasets.Image(decode=False))
                    elif isinstance(getattr(feature, "feature", None), datasets.Image):
                        stream = stream.cast_column(column, datasets.List(datasets.Image(decode=False)))
                label = (stream.features or {}).get("label")
                names = list(label.names) if isinstance(label, datasets.ClassLabel) else None
                for index, record in enumerate(stream):
                    yield source_row(config, split, index, record, names)


def walk_against(folder: str | os.PathLike[str]) -> AgainstFolder:
    """The image files under ``folder`` (regular files only; links and other files counted, not read)."""
    root = Path(folder).resolve()
    if not root.is_dir():
        raise AuditInputError(f"--against {folder}: not a folder; give a folder of images")
    splits = _built_folder_splits(root)
    if splits is not None:
        default = _default_config(root, splits)
        splits = {key: paths for key, paths in splits.items() if key[0] == default}
        return AgainstFolder(name=root.name, root=root, files=[], skipped={}, splits=splits,
                             rows=count_folder_rows(splits))
    files: list[Path] = []
    skipped: dict[str, int] = {}
    pending = [root]
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                if entry.is_symlink():
                    reason = "symbolic link (not followed)"
                elif entry.is_dir(follow_symlinks=False):
                    pending.append(Path(entry.path))
                    continue
                elif not entry.is_file(follow_symlinks=False):
                    reason = "not a regular file"
                elif Path(entry.name).suffix.lower() not in IMAGE_SUFFIXES:
                    reason = "not an image file name"
                else:
                    files.append(Path(entry.path))
                    continue
                skipped[reason] = skipped.get(reason, 0) + 1
    return AgainstFolder(name=root.name, root=root, files=sorted(files), skipped=skipped)


def _built_folder_splits(root: Path) -> dict[tuple[str, str], list[Path]] | None:
    """The splits of a built folder (a README.md whose front matter lists ``configs``), else None."""
    from huggingface_hub import metadata_load

    readme = root / "README.md"
    try:
        has_configs = readme.is_file() and bool((metadata_load(readme) or {}).get("configs"))
    except (ValueError, yaml.YAMLError):
        has_configs = False
    return folder_splits(root) if has_configs else None


def _default_config(root: Path, splits: dict[tuple[str, str], list[Path]]) -> str:
    """The config a built folder marks ``default: true`` (else its first)."""
    from huggingface_hub import metadata_load

    configs = (metadata_load(root / "README.md") or {}).get("configs") or []
    marked = [c.get("config_name", "default") for c in configs if c.get("default")]
    return marked[0] if marked else next(iter(splits))[0]


def iter_against(folder: AgainstFolder) -> Iterator[SourceRow]:
    """The rows of an ``--against`` folder: one per image file (id: its relative path), or the
    default config's rows of a built folder (id: its ``image_id``), all under ``against:NAME``."""
    if folder.splits is not None:
        for row in iter_folder(folder.splits):
            row.config, row.split = f"against:{folder.name}", ""
            yield row
        return
    for index, path in enumerate(folder.files):
        relative = path.relative_to(folder.root).as_posix()
        yield SourceRow(f"against:{folder.name}", "", index, [relative], [path.read_bytes()])
