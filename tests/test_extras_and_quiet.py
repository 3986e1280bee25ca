"""A missing extra is refused at start with the install command; scoring keeps stderr quiet."""

from __future__ import annotations

import importlib.metadata
import logging
import warnings

import pytest

from skinvl.extras import missing_from_extra


@pytest.fixture
def without(monkeypatch):
    """Make the given distributions look uninstalled (every other lookup is real)."""

    def hide(*names: str) -> None:
        real = importlib.metadata.version

        def version(name: str) -> str:
            if name in names:
                raise importlib.metadata.PackageNotFoundError(name)
            return real(name)

        monkeypatch.setattr(importlib.metadata, "version", version)

    return hide


def test_this_environment_has_the_extras_the_tests_use():
    assert missing_from_extra("eval") == [] and missing_from_extra("train") == []
    assert missing_from_extra("no-such-extra") == []


def test_eval_without_its_extra_refuses_before_any_work(without, tmp_path, capsys):
    from skinvl.cli import main

    without("nltk", "sacrebleu")
    out = tmp_path / "run"
    rc = main(["eval", "score", "--predictions", str(tmp_path / "answers.jsonl"), "--out", str(out)])
    assert rc == 2 and not out.exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: skinvl eval score needs the eval extra, and nltk, sacrebleu are not installed: "
                   "pip install 'mm-skin[eval]'"]  # fmt: skip
    assert main(["eval", "lmms-task", "--data", "my-org/mm-skin", "--out", str(tmp_path / "t")]) == 0


def test_train_without_its_extra_refuses_before_loading(without, tmp_path, capsys):
    from skinvl.cli import main

    without("peft")
    rc = main(["train", "--model", "skinvl-tiny", "--data", "nowhere", "--output", str(tmp_path / "o")])
    assert rc == 2 and not (tmp_path / "o").exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == ("skinvl train: skinvl train needs the train extra, and peft is not installed: "
                       "pip install 'mm-skin[train]'")  # fmt: skip


def test_scoring_does_not_flood_stderr(caplog):
    """nltk's "0 counts of n-gram overlaps" and sacrebleu's "forgot to detokenize" warnings came
    once per group (overall, each modality, each answer type)."""
    from skinvl.evaluation.predictions import VQASample
    from skinvl.evaluation.scoring import ScoreSettings, score_vqa

    samples = [VQASample("Q?", "A red papule .", f"A lesion {i} .", modality=("clinical", "dermoscopy")[i % 2],
                         answer_type="open") for i in range(120)]  # fmt: skip
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        result = score_vqa(samples, settings=ScoreSettings(bertscore=False))
    assert result.metrics["standard"]["overall"]["sacrebleu"] > 0
    assert not [w for w in caught if "n-gram overlaps" in str(w.message)]
    assert not [r for r in caplog.records if r.name.startswith("sacrebleu")]
