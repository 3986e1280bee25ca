"""Model cards: ``skinvl card`` previews offline; a stock-LLaVA card asks for no remote code and names its
serving engines; ``base_model``, ``datasets`` and model-index datasets only when known."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest

from skinvl.cli import main

LOCAL_RESULTS = {
    "task": "zero-shot-classification", "dataset": "/data/derm/HAM10000_test.csv", "split": "test",
    "metrics": {"accuracy": 0.5, "n": 10},
}
HUB_RESULTS = {
    "task": "vqa", "dataset": "my-org/mm-skin", "config": "vqa", "split": "test",
    "metrics": {"paper": {"n": 12, "bleu_1": 0.125}},
}


@pytest.fixture(scope="module")
def tiny_folder(tiny, tmp_path_factory) -> Path:
    """The skinvl-tiny preset saved as a checkpoint folder (native format, no training record)."""
    folder = tmp_path_factory.mktemp("card") / "skinvl-tiny"
    model, processor = tiny
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture
def offline(monkeypatch) -> list[str]:
    """Every DNS lookup or connection is refused and recorded: the card must need none."""
    attempts: list[str] = []

    def refuse(*args, **kwargs):
        attempts.append(repr(args[:2]))
        raise OSError("network refused by the test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


def _results(tmp_path: Path, name: str, doc: dict) -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def _card(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["card", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_card_preview_prints_and_writes_offline(tiny_folder, tmp_path, capsys, offline):
    from huggingface_hub import ModelCard

    results = [str(_results(tmp_path, n, d)) for n, d in (("local", LOCAL_RESULTS), ("hub", HUB_RESULTS))]
    code, printed, err = _card(capsys, str(tiny_folder), "--repo-id", "me/skinvl-ft", "--results", *results)
    assert code == 0, err
    card = ModelCard(printed, ignore_metadata_errors=False)
    # Nothing guessed: no training record and no flags means no base_model and no datasets.
    assert card.data.base_model is None and card.data.datasets is None
    assert "none recorded" in card.text and "no Hub dataset recorded" in card.text
    # A local label file is named in the body, never as a model-index dataset type.
    assert {(r.dataset_type, r.metric_type) for r in card.data.eval_results} == {("my-org/mm-skin", "bleu_1")}
    assert "### HAM10000" in card.text and "computed on local data, which has no Hub dataset id" in card.text
    assert "trust_remote_code=True" in card.text and 'skinvl.load("me/skinvl-ft"' in card.text

    code, _, err = _card(capsys, str(tiny_folder), "--base-model", "my-org/skinvl-base", "--dataset", "my-org/d",
                         "--out", str(tmp_path / "preview"))
    assert code == 0, err
    data = ModelCard.load(tmp_path / "preview" / "README.md").data
    assert data.base_model == ["my-org/skinvl-base"] and data.datasets == ["my-org/d"]
    assert "OWNER/skinvl-tiny" in (tmp_path / "preview" / "README.md").read_text()  # default repo id
    # An existing README.md is replaced only with --overwrite; bad folders are one-line errors.
    code, _, err = _card(capsys, str(tiny_folder), "--out", str(tmp_path / "preview"))
    assert code == 2 and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert _card(capsys, str(tiny_folder), "--out", str(tmp_path / "preview"), "--overwrite")[0] == 0
    code, _, err = _card(capsys, str(tmp_path / "preview"))
    assert code == 2 and "no config.json" in err and len(err.strip().splitlines()) == 1
    code, _, err = _card(capsys, str(tiny_folder), "--results", str(tmp_path / "missing.json"))
    assert code == 2 and "missing.json" in err
    assert offline == []


def test_stock_llava_card_needs_no_remote_code_and_names_its_engines(tmp_path, capsys, offline):
    from eval_families import build_llava
    from huggingface_hub import ModelCard

    folder = build_llava(tmp_path / "skinvl-llava")
    code, printed, err = _card(capsys, str(folder), "--repo-id", "me/skinvl-llava")
    assert code == 0, err
    card = ModelCard(printed, ignore_metadata_errors=False)
    assert "trust_remote_code=True" not in printed and "import skinvl" not in printed
    assert "`LlavaForConditionalGeneration`" in printed
    for engine in ("transformers serve me/skinvl-llava", "vllm serve me/skinvl-llava",
                   "sglang.launch_server --model-path me/skinvl-llava"):
        assert engine in printed, engine
    assert card.data.base_model is None and card.data.datasets is None
    assert offline == []


def test_converted_llava_card(shared_dir, tmp_path, capsys):
    """What a user runs: ``skinvl convert ... --format llava``, then ``skinvl card`` on the result."""
    fixture = shared_dir / "fixtures" / "skinvl-original-tiny"
    if not fixture.is_dir():
        pytest.skip(f"{fixture} is absent")
    converted = tmp_path / "skinvl-llava"
    assert main(["convert", str(fixture), str(converted), "--format", "llava"]) == 0
    capsys.readouterr()
    code, printed, err = _card(capsys, str(converted), "--repo-id", "me/skinvl-llava")
    assert code == 0, err
    assert "trust_remote_code=True" not in printed and "vllm serve me/skinvl-llava" in printed
    # The native conversion of the same checkpoint keeps the remote-code instructions.
    native = tmp_path / "skinvl-native"
    shutil.rmtree(native, ignore_errors=True)
    assert main(["convert", str(fixture), str(native)]) == 0
    capsys.readouterr()
    assert "trust_remote_code=True" in _card(capsys, str(native))[1]
