"""Suite-wide settings: offline hub, and where the shared real-data fixtures live."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Must be set before huggingface_hub is imported anywhere, or hub calls retry for ~20 s.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tiny models on a 2-core machine run under pytest-xdist (one worker per core): intra-op
# threads only contend with the other worker (measured: batch-16 generation 2-5x slower).
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("MM_SKIN_SHARED", REPO_ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared beside the checkout (real annotation files and fixtures); skip when absent."""
    if not SHARED_DIR.is_dir():
        pytest.skip(f"{SHARED_DIR} is absent: the real-data checks need ../shared beside the repo")
    return SHARED_DIR


@pytest.fixture(scope="module")
def tiny():
    """``(model, processor)`` of the ``skinvl-tiny`` preset (random weights, seeded), per module."""
    import skinvl

    return skinvl.load("skinvl-tiny")


@pytest.fixture(scope="session")
def vqa_folder(tmp_path_factory) -> Path:
    """The embedded sample release built into a Hub folder (Parquet + README configs), once per
    worker; tests read it and never write into it."""
    import mm_skin_dataset

    sample = REPO_ROOT / "examples" / "mm-skin-sample"
    if not sample.is_dir():
        pytest.skip(f"{sample} is absent")
    out = tmp_path_factory.mktemp("mm-skin") / "mm-skin"
    mm_skin_dataset.build(sample, out, overwrite=True)
    return out
