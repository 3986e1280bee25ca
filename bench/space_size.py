"""Install size of the exported Space: its requirements vs all of mm-skin's dependencies (the old list).

    python bench/space_size.py                              # installed sizes, from this environment
    python bench/space_size.py --wheels DIR                 # also the wheels in DIR (pip download --no-deps)

Exports the ``skinvl-tiny`` Space into a temporary folder, reads its requirements.txt, and sums the
installed size (the RECORD of each installed distribution) of their dependency closure; then the
same for mm-skin's own (non-extra) dependencies, which the export listed before, and the ratio.
Both are measured here, with this environment's torch build; PyPI's CUDA torch (the old Space's
default on Linux) adds its nvidia-* wheels on top, which no CPU machine installs.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
from importlib.metadata import PackageNotFoundError, distribution, requires
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from skinvl.cli import main


def installed_closure(names: list[str]) -> dict[str, int]:
    """``{distribution: installed bytes}`` of ``names`` and everything they require (no extras)."""
    sizes: dict[str, int] = {}
    todo = list(names)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in sizes:
            continue
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            sizes[name] = 0
            continue
        sizes[name] = sum(f.size or 0 for f in dist.files or [])
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return sizes


def space_requirement_names() -> list[str]:
    """The distributions requirements.txt of a freshly exported ``skinvl-tiny`` Space pins."""
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        assert main(["demo", "--export-space", f"{tmp}/space", "--model", "skinvl-tiny"]) == 0
        lines = Path(tmp, "space", "requirements.txt").read_text().splitlines()
    return [line.split("==")[0] for line in lines if line and not line.startswith(("#", "-"))]


def main_bench() -> None:
    """Print the installed sizes (and wheel sizes with --wheels) before/after."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheels", type=Path, help="folder of downloaded wheels/sdists to sum")
    args = parser.parse_args()
    new = installed_closure(space_requirement_names())
    old_names = [Requirement(r).name for r in requires("mm-skin") or [] if "extra ==" not in r]
    old = installed_closure(old_names)
    gb = 1e9
    print(f"Space requirements: {len(new)} distributions, {sum(new.values()) / gb:.2f} GB installed")
    print(f"mm-skin dependencies (the old requirements.txt): {len(old)} distributions, "
          f"{sum(old.values()) / gb:.2f} GB installed")
    print(f"ratio new/old: {sum(new.values()) / sum(old.values()):.2f}")
    print("largest:", ", ".join(f"{n} {s / 1e6:.0f} MB" for n, s in sorted(new.items(), key=lambda x: -x[1])[:6]))
    if args.wheels:
        files = sorted(p for p in args.wheels.iterdir() if p.is_file())
        print(f"files in {args.wheels}: {len(files)}, {sum(p.stat().st_size for p in files) / gb:.3f} GB")


if __name__ == "__main__":
    sys.exit(main_bench())
