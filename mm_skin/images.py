"""Image files: raw bytes read in a bounded thread pool, order kept, checked to decode.

A PNG (the release's format) is checked without decoding pixels: its header against PIL's
limits, every chunk and CRC (what ``PIL.Image.verify()`` checks), and its zlib image data
inflated in bounded chunks (the output is thrown away: no unfiltering, no image in memory).
Other formats are opened and loaded by PIL. The bytes stay the ORIGINAL file bytes. Only
regular files are read (a FIFO or a device at an image path is refused, never opened for a
blocking read). :func:`check_parquet_images` runs the same check over a written Parquet file.

>>> check_image_bytes(b"")
'empty image file'
>>> check_image_bytes(b"\\x89PNG\\r\\n\\x1a\\n")
'undecodable image: truncated PNG (file ends at byte 8 before the IEND chunk)'
>>> check_image_bytes(b"<svg xmlns='http://www.w3.org/2000/svg'/>")
'undecodable image: not a recognised image format'
"""

from __future__ import annotations

import collections
import errno
import io
import os
import re
import stat
import struct
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import pyarrow as pa

try:  # ISA-L inflates PNG data ~2.5x faster than zlib (same API; bench/build.py); zlib otherwise
    from isal import isal_zlib as _inflate_lib
except ImportError:  # pragma: no cover - isal is a dependency; a source checkout may lack it
    _inflate_lib = zlib  # type: ignore[assignment]

#: what the reader yields per file: the bytes, or why the file cannot be used
ImageRead = tuple[pa.Buffer | None, str | None]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PNG colour type -> (samples per pixel, allowed bit depths) (PNG spec, table 11.1)
_PNG_COLOUR_TYPES = {0: (1, (1, 2, 4, 8, 16)), 2: (3, (8, 16)), 3: (1, (1, 2, 4, 8)), 4: (2, (8, 16)), 6: (4, (8, 16))}
# Adam7 passes: (x start, y start, x step, y step)
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
_INFLATE_CHUNK = 1 << 20  # bytes of inflated data held at once, however large the image
_FILTER_TYPES = bytes(range(5))  # PNG scanline filters 0..4


def _pixel_limit_problem(width: int, height: int) -> str | None:
    """Why ``width x height`` is over PIL's decompression-bomb limit (read at call time), or None."""
    from PIL import Image as PILImage

    limit = PILImage.MAX_IMAGE_PIXELS
    if limit is not None and width * height > limit:
        return (f"undecodable image: {width}x{height} = {width * height:,} pixels, over PIL.Image.MAX_IMAGE_PIXELS "
                f"({limit:,}; PIL refuses or warns on it as a decompression bomb): downscale the image")
    return None


def _png_rows(width: int, height: int, bits_per_pixel: int, interlaced: bool) -> list[tuple[int, int, int]]:
    """``(start, end, row stride)`` of each pass of the inflated image data; a row starts with its
    filter byte, so the stream is exactly ``end`` of the last pass long."""
    passes = _ADAM7 if interlaced else ((0, 0, 1, 1),)
    segments, start = [], 0
    for x0, y0, dx, dy in passes:
        w, h = -(-(width - x0) // dx), -(-(height - y0) // dy)
        if w > 0 and h > 0:
            stride = 1 + -(-(w * bits_per_pixel) // 8)
            segments.append((start, start + h * stride, stride))
            start += h * stride
    return segments


class _PngData:
    """Inflates a PNG's IDAT stream in bounded chunks and checks each scanline's filter byte."""

    def __init__(self, ihdr: bytes) -> None:
        width, height, depth, colour, compression, filtering, interlace = struct.unpack(">IIBBBBB", ihdr)
        samples, depths = _PNG_COLOUR_TYPES.get(colour, (0, ()))
        if not width or not height or depth not in depths or compression or filtering or interlace > 1:
            raise ValueError(f"invalid PNG header ({width}x{height}, bit depth {depth}, colour type {colour}, "
                             f"compression {compression}, filter {filtering}, interlace {interlace})")
        self.too_big = _pixel_limit_problem(width, height)
        self.segments = _png_rows(width, height, samples * depth, bool(interlace))
        self.expected = self.segments[-1][1]
        self.produced = 0
        self.inflater = _inflate_lib.decompressobj()

    def feed(self, data: memoryview) -> None:
        """Inflate one IDAT chunk's payload (raises ValueError on bad data); stops at the image's size."""
        while data and self.produced < self.expected and not self.inflater.eof:
            try:
                out = self.inflater.decompress(data, _INFLATE_CHUNK)
            except _inflate_lib.error as e:
                raise ValueError(f"broken image data stream ({e})") from None
            self._check_filters(out)
            self.produced += len(out)
            data = memoryview(self.inflater.unconsumed_tail)

    def _check_filters(self, out: bytes) -> None:
        a, b = self.produced, self.produced + len(out)
        for start, end, stride in self.segments:
            if end <= a or start >= b:
                continue
            first = start + -(-(max(a, start) - start) // stride) * stride
            if out[first - a : min(b, end) - a : stride].translate(None, _FILTER_TYPES):
                raise ValueError("broken image data stream (a scanline has an unknown filter type)")

    def finish(self) -> str | None:
        """Why the stream cannot give the whole image, or None."""
        if self.produced < self.expected:
            return f"image data ends after {self.produced:,} of {self.expected:,} bytes (truncated or broken stream)"
        return None


def _check_png(data: bytes | pa.Buffer) -> str | None:
    """Walk a PNG's chunks (every CRC, as ``PIL.Image.verify()``), check the header against PIL's
    limits and inflate the image data in bounded chunks, without copying the file.

    ``zlib.crc32`` and ``decompress`` run on zero-copy slices of the buffer and release the GIL,
    so the reader threads overlap. Bytes after IEND are ignored, as PIL does.
    """
    view = memoryview(data).cast("B")
    size = len(view)
    pos = len(_PNG_SIGNATURE)
    png: _PngData | None = None
    while True:
        if pos + 12 > size:
            return f"undecodable image: truncated PNG (file ends at byte {size} before the IEND chunk)"
        length, ctype = struct.unpack_from(">I4s", view, pos)
        end = pos + 12 + length
        name = ctype.decode("latin-1")
        if end > size:
            return f"undecodable image: truncated PNG ({name!r} chunk at byte {pos} runs past the end of the file, {size} bytes)"
        if zlib.crc32(view[pos + 4 : end - 4]) != struct.unpack_from(">I", view, end - 4)[0]:
            return f"undecodable image: broken PNG (bad checksum in {name!r} chunk at byte {pos})"
        try:
            if pos == len(_PNG_SIGNATURE):
                if ctype != b"IHDR" or length != 13:
                    return f"undecodable image: broken PNG (first chunk is {name!r}, expected a 13-byte 'IHDR')"
                png = _PngData(bytes(view[pos + 8 : end - 4]))
                if png.too_big:
                    return png.too_big
            elif ctype == b"IDAT":
                assert png is not None
                png.feed(view[pos + 8 : end - 4])
            elif ctype == b"IEND":
                assert png is not None
                problem = png.finish()
                return None if problem is None else f"undecodable image: broken PNG ({problem})"
        except ValueError as e:
            return f"undecodable image: broken PNG ({e})"
        pos = end


def check_image_bytes(data: bytes | pa.Buffer) -> str | None:
    """Why these bytes would not decode with PIL's default settings, or None.

    PNG (the release's format) gets :func:`_check_png`: header limits, every chunk and its CRC
    up to IEND, and the zlib image data inflated in bounded chunks, with no pixel unfiltered.
    Other formats are opened and fully loaded by PIL, from an in-memory file it can seek in.
    """
    if len(data) == 0:
        return "empty image file"
    if memoryview(data).cast("B")[: len(_PNG_SIGNATURE)] == _PNG_SIGNATURE:
        return _check_png(data)
    from PIL import Image as PILImage  # local: PIL plugin registration is only needed here

    try:
        with PILImage.open(io.BytesIO(memoryview(data).cast("B"))) as img:
            problem = _pixel_limit_problem(*img.size)
            if problem is None:
                img.load()
    except PILImage.UnidentifiedImageError:
        return "undecodable image: not a recognised image format"
    except PILImage.DecompressionBombError as e:
        return f"undecodable image: {e}"
    except Exception as e:  # PIL raises many types (SyntaxError, OSError, struct.error...)
        detail = re.sub(r" at 0x[0-9a-f]+", "", str(e))  # keep the report reproducible
        return f"undecodable image: {type(e).__name__}: {detail}"
    return problem


HIGH_BIT_DEPTH_NOTE = ("16-bit PNG: stored as is; PIL's plain convert('RGB') clips it to near white, so read it with "
                       "skinvl (skinvl.inference.images.to_rgb scales it to 8 bits)")


def high_bit_depth_note(data: bytes | pa.Buffer) -> str | None:
    """A warning for a 16-bit PNG (the bytes are kept; readers must scale, not clip, its samples), else None."""
    view = memoryview(data).cast("B")
    if view[: len(_PNG_SIGNATURE)] != _PNG_SIGNATURE or len(view) < 26 or view[12:16] != b"IHDR":
        return None
    return HIGH_BIT_DEPTH_NOTE if view[24] == 16 else None  # IHDR: width, height, then the bit depth


_FILE_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
               (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))
# O_NONBLOCK: opening a FIFO does not wait for a writer; O_NOFOLLOW: callers pass resolved paths,
# so a symlink here was put in place after the path was checked.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)


def _read_one(path: Path) -> ImageRead:
    """The bytes of one image file, or why it cannot be used (only regular files are read)."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        return None, "missing image file"
    except OSError as e:
        if e.errno == errno.ELOOP:
            return None, "image path became a symlink during the build (not followed)"
        return None, f"unreadable image file: {e.strerror or e}"
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        kind = next((k for test, k in _FILE_KINDS if test(st.st_mode)), "not a file")
        return None, f"not a regular file ({kind})"
    # Read straight into a buffer of Arrow's memory pool: the pool recycles its pages, where a
    # fresh `bytes` per image costs page faults on every read (5x slower here, bench/build.py).
    with open(fd, "rb") as f:
        size = st.st_size
        buf = pa.allocate_buffer(size)
        try:
            n = f.readinto(memoryview(buf).cast("B")) if size else 0
        except OSError as e:
            return None, f"unreadable image file: {e.strerror or e}"
    if n != size:
        return None, f"unreadable image file: read {n} of {size} bytes (file changed during the build?)"
    problem = check_image_bytes(buf)
    return (None, problem) if problem else (buf, None)


def _read_chunk(paths: list[Path]) -> list[ImageRead]:
    return [_read_one(p) for p in paths]


def read_images_ordered(paths: Sequence[Path], num_proc: int = 1, chunk_size: int = 16) -> Iterator[ImageRead]:
    """Yield (pyarrow.Buffer, None) or (None, reason) for each path, in order.

    ``num_proc`` threads read and check chunks of files (file reads and zlib CRCs release the
    GIL); at most ``2 * num_proc`` chunks are in flight so memory stays bounded.
    """
    chunks = [list(paths[i : i + chunk_size]) for i in range(0, len(paths), chunk_size)]
    if num_proc <= 1:
        for chunk in chunks:
            yield from _read_chunk(chunk)
        return
    with ThreadPoolExecutor(max_workers=num_proc, thread_name_prefix="mm-skin-read") as pool:
        pending: collections.deque[Future[list[ImageRead]]] = collections.deque()
        it = iter(chunks)
        for chunk in it:
            pending.append(pool.submit(_read_chunk, chunk))
            if len(pending) >= 2 * num_proc:
                break
        while pending:
            results = pending.popleft().result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append(pool.submit(_read_chunk, nxt))
            yield from results


class ImageProblem(NamedTuple):
    """An image of a Parquet file that would not decode: its row, file name and the reason."""

    row: int
    name: str | None
    reason: str


def check_parquet_images(path: str | os.PathLike[str], *, num_proc: int = 4, batch_rows: int = 64) -> list[ImageProblem]:
    """Every image of one Parquet file (a ``datasets`` ``Image`` column ``image``, or a list of
    them, ``images``) checked with :func:`check_image_bytes`: the problems, [] when all decode.

    Reads the image columns only, ``batch_rows`` rows at a time (memory stays bounded), and
    checks each batch on ``num_proc`` threads. An image stored as a path without bytes is a
    problem too: the file would not be self-contained.

    >>> check_parquet_images("mm-skin/vqa/test-00000-of-00001.parquet")  # doctest: +SKIP
    []
    """
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    columns = [c for c in ("image", "images") if c in pf.schema_arrow.names]
    problems: list[ImageProblem] = []
    if not columns:
        return problems
    row = 0
    with ThreadPoolExecutor(max_workers=max(1, num_proc), thread_name_prefix="mm-skin-check") as pool:
        for batch in pf.iter_batches(batch_size=batch_rows, columns=columns):
            items = []  # (row, name, bytes)
            for i, record in enumerate(batch.to_pylist()):
                for image in [record["image"]] if "image" in record else (record["images"] or []):
                    if image is not None:
                        items.append((row + i, image.get("path"), image.get("bytes")))
            reasons = pool.map(lambda item: "image stored as a path, without its bytes" if item[2] is None
                               else check_image_bytes(item[2]), items)
            problems += [ImageProblem(r, name, reason) for (r, name, _), reason in zip(items, reasons, strict=True) if reason]
            row += batch.num_rows
    return problems
