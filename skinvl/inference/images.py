"""Opening images for models: THE conversion to 8-bit RGB, and the one lazy image list.

Every image a local model sees goes through :func:`to_rgb` once (files and dataset cells through
:func:`decode`, in-memory images through the batching loop). It converts what a plain
``convert("RGB")`` gets wrong: 16-bit (and 32-bit / float) grey is scaled to 8 bits instead of
clipped at 255 (a 16-bit PNG would reach the model as pure white); transparency (RGBA, LA, PA,
palette or grey with a transparent colour) is composited on white instead of dropped (transparent
pixels would show their hidden colour, often black); CMYK, palette, bilevel and the rest use PIL's
conversion. 16-bit RGB(A) PNGs are already reduced to 8 bits by PIL when decoded.

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
    try:
        return file.read_bytes()
    except OSError as err:  # unreadable (permissions, I/O error)
        raise ImageFileError(f"image {path} cannot be read ({err.strerror or err}); check its permissions.") from err


# Modes whose samples may exceed 8 bits: PIL's convert("RGB") clips them at 255.
_WIDE_GREY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_TRANSPARENT_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
BACKGROUND = (255, 255, 255)  # what transparent pixels become


def to_rgb(image):
    """``image`` (any PIL mode) as an 8-bit RGB image, converted as the module docstring says."""
    from PIL import Image

    if image.mode == "RGB" and "transparency" not in image.info:
        return image
    if image.mode in _WIDE_GREY_MODES:
        return _wide_grey_to_rgb(image)
    if image.mode in _TRANSPARENT_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", image.size, (*BACKGROUND, 255)), rgba).convert("RGB")
    return image.convert("RGB")


def _wide_grey_to_rgb(image):
    """16-bit grey scaled by 255/65535; 32-bit int or float: the same when any value exceeds 255
    (a 16-bit source), as is when all fit in 8 bits; float images in [0, 1] as fractions."""
    import numpy as np
    from PIL import Image

    values = np.asarray(image, dtype=np.float64)
    top = float(values.max()) if values.size else 0.0
    if image.mode.startswith("I;16") or top > 255:
        scale = 255 / 65535
    elif image.mode == "F" and top <= 1.0:
        scale = 255.0
    else:
        scale = 1.0
    grey = np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)
    return Image.fromarray(grey, "L").convert("RGB")


def decode(data: bytes, where: str):
    """Decode image bytes into an 8-bit RGB PIL image (:func:`to_rgb`); ``where`` names the source in errors."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return to_rgb(image)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as err:
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


__all__ = ["BACKGROUND", "ImageFileError", "LazyImages", "decode", "mime_type", "open_rgb", "read_regular_file", "to_rgb"]
