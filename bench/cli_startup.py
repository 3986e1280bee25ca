"""Benchmark CLI start-up: ``--help`` / ``--version`` of both commands, in fresh interpreters.

Measures, in the same run and on the same machine, the median wall time (of ``--repeats`` runs) of:

* ``python -c pass`` (the interpreter's own start-up, the baseline);
* ``skinvl --help``, ``skinvl --version``, ``skinvl eval --help``, ``mm-skin --help``, and the
  torch-free scorer import (``import skinvl.evaluation.scoring``, what the lmms-eval task loads);
* the old eager start-up (``import skinvl`` registering with the Auto classes, i.e. importing torch
  and transformers, plus every sub-command's module), which ``skinvl --help`` used to pay;

and prints each with its ratio to ``python -c pass`` and to the eager start-up. With ``--before DIR``
(a source tree of an earlier commit, e.g. ``git archive REV skinvl mm_skin mm_skin_dataset.py | tar
-x -C DIR``) the same commands also run on that code (``PYTHONPATH=DIR``), for a before/after table.
Target: ``skinvl --help`` under 1.5 s on a quiet machine.

    .venv/bin/python bench/cli_startup.py [--repeats 5] [--before DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

TARGET_SECONDS = 1.5

_EAGER = ("import importlib, skinvl, skinvl.cli, skinvl.auto_registration as r; r.register(); "
          "[importlib.import_module(m) for m, _ in skinvl.cli.COMMANDS.values()]")
_CLI = "import sys; from {module} import main; sys.argv[0] = {prog!r}; main({argv!r})"

CASES = {
    "python -c pass": "pass",
    "skinvl --help": _CLI.format(module="skinvl.cli", prog="skinvl", argv=["--help"]),
    "skinvl --version": _CLI.format(module="skinvl.cli", prog="skinvl", argv=["--version"]),
    "skinvl eval --help": _CLI.format(module="skinvl.cli", prog="skinvl", argv=["eval", "--help"]),
    "mm-skin --help": _CLI.format(module="mm_skin_dataset", prog="mm-skin", argv=["--help"]),
    "import skinvl.evaluation.scoring": "import skinvl.evaluation.scoring",
    "old eager start-up": _EAGER,
}
_BEFORE = ("skinvl --help", "skinvl --version", "skinvl eval --help", "mm-skin --help",
           "import skinvl.evaluation.scoring")


def _seconds(code: str, source: str | None = None) -> float:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **({"PYTHONPATH": source} if source else {})}
    start = time.perf_counter()
    # cwd: not the checkout, whose skinvl/ would shadow PYTHONPATH (python -c puts the cwd first)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=tempfile.gettempdir())
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{code!r} failed: {done.stderr[-2000:]}")
    return elapsed


def main() -> None:
    """Run every case ``--repeats`` times (interleaved, so load changes hit all alike) and print medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--before", help="source tree of the earlier code to time the same commands on")
    args = parser.parse_args()
    _seconds("import torch, transformers")  # warm the file cache: the first import of torch reads GBs
    cases = {name: (code, None) for name, code in CASES.items()}
    if args.before:
        cases.update({f"{name} (before)": (CASES[name], args.before) for name in _BEFORE})
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.repeats):
        for name, (code, source) in cases.items():
            times[name].append(_seconds(code, source))
    medians = {name: statistics.median(values) for name, values in times.items()}
    base, eager = medians["python -c pass"], medians["old eager start-up"]
    print(f"{'case':42} {'median s':>9} {'x python':>9} {'x eager':>8}")
    for name, value in medians.items():
        print(f"{name:42} {value:9.2f} {value / base:9.1f} {value / eager:8.2f}")
    verdict = "meets" if medians["skinvl --help"] < TARGET_SECONDS else "misses"
    print(f"skinvl --help {medians['skinvl --help']:.2f} s {verdict} the {TARGET_SECONDS} s target "
          f"(on a quiet machine; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}).")


if __name__ == "__main__":
    main()
