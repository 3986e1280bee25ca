"""The one lazy image list of evaluation: original bytes on demand, decoded per batch.

Local models get decoded RGB images (``images[start:stop]``); served models get the ORIGINAL
file bytes (:meth:`LazyImages.raw`), never a re-encoded copy. Sources: a dataset's image column
(read undecoded, so the Parquet bytes are the original file) or image files on disk.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mm_skin.paths import is_inside


class ImageFileError(ValueError):
    """An image that cannot be read; the message names the file or row and the fix."""


def read_regular_file(path: str | Path) -> bytes:
    """The bytes of ``path``, which must be a regular file (not a folder, device or FIFO)."""
    file = Path(path)
    if not file.is_file():
        raise ImageFileError(f"image {path} does not exist or is not a regular file; check the path.")
    return file.read_bytes()


def decode(data: bytes, where: str):
    """Decode image bytes into an RGB PIL image; ``where`` names the source in errors."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError) as err:
        raise ImageFileError(f"{where}: cannot decode the image ({err}); replace or remove it.") from err


def open_rgb(path: str | Path):
    """Read and decode one image file into RGB."""
    return decode(read_regular_file(path), f"image {path}")


def mime_type(data: bytes) -> str:
    """The MIME type of image bytes, from the format PIL recognises (``image/png``, ``image/jpeg``...)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return Image.MIME.get(image.format or "", "application/octet-stream")


class LazyImages(Sequence):
    """Images fetched by index only when asked for: ``images[i]`` / slices decode, ``raw(i)`` does not."""

    def __init__(self, fetch: Callable[[int], bytes], size: int, where: Callable[[int], str] = str):
        self._fetch, self._size, self._where = fetch, size, where

    @classmethod
    def from_files(cls, paths: Sequence[str | Path]) -> LazyImages:
        """Images stored as files (read when needed)."""
        paths = list(paths)
        return cls(lambda i: read_regular_file(paths[i]), len(paths), lambda i: f"image {paths[i]}")

    @classmethod
    def from_dataset(cls, ds, column: str = "image", root: str | Path | None = None) -> LazyImages:
        """The ``column`` of a ``datasets.Dataset`` read undecoded: the stored original bytes."""
        import datasets

        raw = ds.cast_column(column, datasets.Image(decode=False))

        def fetch(i: int) -> bytes:
            cell = raw[i][column]
            if cell.get("bytes") is not None:
                return cell["bytes"]
            return read_regular_file(_inside(root, cell.get("path"), i))

        return cls(fetch, len(ds), lambda i: f"dataset row {i} ({column})")

    def __len__(self) -> int:
        return self._size

    def raw(self, index: int) -> bytes:
        """The original bytes of image ``index``."""
        return self._fetch(index)

    def take(self, indices: Sequence[int]) -> LazyImages:
        """A lazy view of the images at ``indices`` (in that order)."""
        indices = list(indices)
        return LazyImages(lambda k: self._fetch(indices[k]), len(indices), lambda k: self._where(indices[k]))

    def __getitem__(self, item: Any):
        if isinstance(item, slice):
            return [self[i] for i in range(*item.indices(self._size))]
        if not -self._size <= item < self._size:
            raise IndexError(item)
        item %= self._size
        return decode(self._fetch(item), self._where(item))


def _inside(root: str | Path | None, path: str | None, row: int) -> Path:
    """A dataset's image path, refused when it leaves ``root`` (after resolving symlinks)."""
    if not path:
        raise ImageFileError(f"dataset row {row}: the image has neither bytes nor a path.")
    file = Path(path)
    if root is not None:
        # datasets stores absolute paths for local image files: those are fine when inside root
        base = Path(root).resolve()
        file = (base / file).resolve()  # the path checked is the path read
        if not is_inside(file, base):
            raise ImageFileError(f"dataset row {row}: image path {path!r} leaves {base}; fix the dataset.")
    return file


__all__ = ["ImageFileError", "LazyImages", "decode", "mime_type", "open_rgb", "read_regular_file"]
