"""Provenance: every results.md opens with what was evaluated; a card refuses another model's results."""

from __future__ import annotations

import json

import pytest
from test_eval_foreign import model_answers, write_lmms_eval_log

from mm_skin.hub import PushError
from skinvl.cli import main
from skinvl.model_card import check_results_model, render_model_card


def test_results_md_starts_with_provenance(vqa_folder, tmp_path):
    import datasets

    ds = datasets.load_dataset(str(vqa_folder), "vqa", split="test")
    rows = [ds[i] for i in range(len(ds))]
    log = write_lmms_eval_log(tmp_path / "m_samples_mmskin_vqa.jsonl", rows, model_answers(rows))
    assert main(["eval", "score", "--predictions", str(log), "--data", str(vqa_folder), "--out", str(tmp_path / "r"),
                 "--no-bertscore"]) == 0
    doc = json.loads((tmp_path / "r" / "results.json").read_text())
    head = (tmp_path / "r" / "results.md").read_text().split("\n\n")[1].splitlines()
    assert [line.split(":")[0] for line in head] == ["- Model", "- Dataset", "- Split", "- Decoding", "- Judge", "- Tool"]
    assert doc["dataset_info"]["row_ids_blake2b"] in head[1] and "synthetic data, not MM-Skin" in head[1]
    assert "answers read from" in head[0] and "date: 20" in head[5]
    assert doc["synthetic_data"]


@pytest.fixture(scope="module")
def folder(tiny, tmp_path_factory):
    model, processor = tiny
    out = tmp_path_factory.mktemp("card") / "skinvl-ft"
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def _doc(**extra) -> dict:
    return {"task": "vqa", "name": "run", "dataset": "me/mm-skin", "config": "vqa", "split": "test", "n_samples": 3,
            "metrics": {"standard": {"n": 3, "rouge_l": 0.5}}, **extra}


def test_card_refuses_results_of_another_model_unless_forced(folder):
    from skinvl.inference.loading import weights_hash

    same = _doc(model_info={"model": str(folder), "weights_blake2b": weights_hash(str(folder))})
    check_results_model([same], folder, "me/skinvl-ft")
    for other, named in ((_doc(model_info={"model": "x", "weights_blake2b": "0" * 32}), "differ"),
                         (_doc(model="zwq803/SkinVL-PubMM"), "not me/skinvl-ft")):
        with pytest.raises(PushError, match=named) as err:
            check_results_model([other], folder, "me/skinvl-ft")
        assert err.value.exit_code == 2 and "--force" in str(err.value)
        check_results_model([other], folder, "me/skinvl-ft", force=True)
        card = render_model_card(folder, "me/skinvl-ft", results=[other])
        assert "Published with --force" in card
    with pytest.warns(UserWarning, match="cannot be verified"):
        check_results_model([_doc(model=None)], folder, "me/skinvl-ft")
    # verified by Hub id through model_info: no false warning; a malformed model_info is no traceback
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_results_model([_doc(model_info={"model": "me/skinvl-ft"})], folder, "me/skinvl-ft")
    with pytest.warns(UserWarning, match="cannot be verified"):
        check_results_model([_doc(model_info="oops")], folder, "me/skinvl-ft")
    # several results with hashes: the folder's weights are read once
    from unittest import mock

    import skinvl.inference.loading as loading

    with mock.patch.object(loading, "weights_hash", wraps=loading.weights_hash) as hashed:
        check_results_model([same, same, same], folder, "me/skinvl-ft")
    assert hashed.call_count == 1


def test_push_refuses_before_uploading(folder, tmp_path, capsys):
    results = tmp_path / "results.json"
    results.write_text(json.dumps(_doc(model="zwq803/SkinVL-PubMM")))
    code = main(["push", str(folder), "me/skinvl-ft", "--results", str(results), "--endpoint", "http://127.0.0.1:9"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "zwq803/SkinVL-PubMM" in err and "--force" in err


def test_card_marks_synthetic_results(folder):
    card = render_model_card(folder, "me/skinvl-ft", results=[_doc(synthetic_data="the sample")])
    assert "synthetic data, not MM-Skin" in card
