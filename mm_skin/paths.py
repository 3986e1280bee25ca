"""Paths read from data files stay inside their root: the ONE check for every such path.

Image paths in caption.csv, VQA.csv, the test CSV and the LLaVA JSON, the data file paths in a
dataset card's ``configs`` (``mm-skin audit``, ``mm-skin push``), and, in ``skinvl``, the image
paths of evaluation label CSVs and the file names in a checkpoint's index JSON are data, not
trusted input. :func:`resolve_inside` confines one of them to its root BEFORE anything is opened:
absolute paths, ``..`` and symlinks that lead out of the root are refused with a reason that
each caller words into its own one-line error. :func:`is_inside` is the same test for a path that
is already a filesystem path (a symlink met while walking a folder to upload, an absolute image
path ``datasets`` stored for a local file).

>>> resolve_inside("/srv/release", "/etc/passwd")
Traceback (most recent call last):
...
mm_skin.paths.UnsafePathError: absolute path (image paths must be relative to the release folder)
>>> resolve_inside("/srv/release", "dataset/../../x.png")
Traceback (most recent call last):
...
mm_skin.paths.UnsafePathError: '..' in the path (image paths must stay inside the release folder)
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

# "C:/x", "C:x", "//server/share" and "\\\\server" name a place outside any root on Windows.
_DRIVE_OR_UNC = re.compile(r"^(?:[A-Za-z]:|//)")


class UnsafePathError(ValueError):
    """A path from a data file that would leave its root; ``str(error)`` is the reason."""


def resolve_inside(root: str | os.PathLike[str], value: str, *, what: str = "image paths",
                   where: str = "the release folder") -> Path:
    """The real path of ``value`` (relative to ``root``), or :class:`UnsafePathError` saying why not.

    ``value`` is a path read from a data file ('/' or '\\' separators). Refused, without opening
    anything: an empty value, a NUL byte, an absolute or drive/UNC path, any ``..`` component,
    and a path whose real location (every symlink on the way followed, ``root``'s own included)
    is not inside ``root``'s real location. The returned path is fully resolved, so opening it
    follows no further symlink that was not checked here. ``what``/``where`` word the reason
    (e.g. ``what="label CSV image paths", where="--images"``). Whether the file exists is not
    checked: a missing file is the caller's "missing file".
    """
    parts = relative_parts(value, what=what, where=where)
    base = Path(root).resolve()
    real = base.joinpath(*parts).resolve()
    if real != base and base not in real.parents:
        raise UnsafePathError(f"a symlink leads outside {where} ({what} must stay inside it)")
    return real


def relative_parts(value: str, *, what: str = "image paths", where: str = "the release folder") -> tuple[str, ...]:
    """The components of ``value`` when, read as text, it names a place under its root.

    The half of :func:`resolve_inside` that opens nothing (for a glob pattern, whose matches are
    checked one by one): an empty value, a NUL byte, an absolute or drive/UNC path and any ``..``
    component raise :class:`UnsafePathError`.

    >>> relative_parts("dataset\\\\bk1_2.png")  # '\\' separators too
    ('dataset', 'bk1_2.png')
    """
    text = value.strip().replace("\\", "/")
    if not text:
        raise UnsafePathError("empty path")
    if "\x00" in text:
        raise UnsafePathError("NUL byte in the path")
    if text.startswith("/") or _DRIVE_OR_UNC.match(text):
        raise UnsafePathError(f"absolute path ({what} must be relative to {where})")
    parts = PurePosixPath(text).parts
    if ".." in parts:
        raise UnsafePathError(f"'..' in the path ({what} must stay inside {where})")
    return parts


def is_inside(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is ``root`` or lies under it, both with every symlink resolved."""
    p, r = Path(path).resolve(), Path(root).resolve()
    return p == r or r in p.parents
