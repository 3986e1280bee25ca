"""The wheel: only our top-level names, the licence and its metadata, every package listed, the
sample release inside it (``mm-skin build --sample`` from an installed wheel), ``pip check`` clean.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
import tomllib

import mm_skin_dataset

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO_ROOT), "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(out)], check=True, capture_output=True, cwd=out)  # fmt: skip
    (path,) = out.glob("mm_skin-*.whl")
    return path


def test_wheel_holds_our_names_the_licence_and_its_metadata(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    dist_info = next(t for t in top if t.endswith(".dist-info"))
    assert top == {"mm_skin", "skinvl", "mm_skin_dataset.py", dist_info}
    licence = zipfile.ZipFile(wheel).read(f"{dist_info}/licenses/LICENSE").decode()
    assert licence == (REPO_ROOT / "LICENSE").read_text() and "Apache License" in licence
    assert "Version 2.0, January 2004" in licence
    meta = Parser().parsestr(zipfile.ZipFile(wheel).read(f"{dist_info}/METADATA").decode())
    assert meta["License-Expression"] == "Apache-2.0"
    assert not [c for c in meta.get_all("Classifier") if c.startswith("License ::")]  # PEP 639
    assert meta.get_all("Project-URL") == ["Paper, https://arxiv.org/abs/2505.06152"]
    for shipped in ("mm_skin/cards/dataset_card.md.jinja", "mm_skin/sample/MM-SkinQA/VQA.csv",
                    "skinvl/recipes/mm_skin_paper.yaml", "skinvl/presets/skinvl-tiny.json",
                    "skinvl/accelerate_configs/deepspeed_zero3.yaml", "skinvl/inference/families.py",
                    "skinvl/evaluation/lmms_eval_task/utils.py"):  # fmt: skip
        assert shipped in names, shipped
    sample_files = {p.relative_to(REPO_ROOT / "examples" / "mm-skin-sample").as_posix()
                    for p in (REPO_ROOT / "examples" / "mm-skin-sample").rglob("*") if p.is_file()}  # fmt: skip
    assert {n.removeprefix("mm_skin/sample/") for n in names if n.startswith("mm_skin/sample/")} == sample_files


def test_every_package_of_the_source_tree_is_listed():
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {".".join(p.parent.relative_to(REPO_ROOT).parts)
             for top in ("mm_skin", "skinvl") for p in (REPO_ROOT / top).rglob("__init__.py")}  # fmt: skip
    assert found <= listed, f"add to pyproject.toml packages: {sorted(found - listed)}"
    assert listed - found == {"mm_skin.cards", "mm_skin.sample"}  # the data-only folders


def test_build_sample_from_the_installed_wheel(wheel, tmp_path):
    """Installed elsewhere and run outside the checkout, `mm-skin build --sample` finds the sample."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)  # fmt: skip
    code = ("import sys, mm_skin, mm_skin_dataset\n"
            "assert mm_skin.__file__.startswith(sys.argv[1]), mm_skin.__file__\n"
            "sys.exit(mm_skin_dataset.main(['build', '--sample', '--out', 'mm-skin', '--num-proc', '1']))\n")  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(target), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", code, str(target)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "mm-skin" / "README.md").is_file() and (tmp_path / "mm-skin" / "LICENSE.md").is_file()
    assert list((tmp_path / "mm-skin" / "vqa").glob("test-*.parquet"))


@pytest.mark.parametrize("argv", [["build"], ["build", "somewhere", "--sample"]])
def test_build_needs_a_source_or_sample_not_both(argv, capsys):
    assert mm_skin_dataset.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["mm-skin build: error: give the release folder SOURCE or --sample (one of them)"]


def test_pip_check_is_clean():
    done = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
