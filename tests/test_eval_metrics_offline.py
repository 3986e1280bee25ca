"""Metrics offline: `skinvl eval prepare-metrics` places WordNet and the BERTScore model, scoring
finds them there with no network; a BERT whose tokenizer has no model_max_length scores.

The BERT is built in code (9 layers, as the paper's layer 9 needs) with a WordPiece tokenizer from
the tokenizers library; the WordNet is test_eval_scoring's one-synset stand-in, which NLTK reads;
the Hub is the loopback server of tests/hub_server.py and NLTK's index a file:// URL.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import pytest
from hub_server import HubServer, HubUser, client_env, run_python
from test_eval_scoring import _write_minimal_wordnet

from skinvl.evaluation.metric_resources import (
    HOME_ENV,
    bertscore_folder,
    metrics_home,
    resolve_bertscore_model,
)
from skinvl.evaluation.predictions import VQASample
from skinvl.evaluation.scoring import ScoreSettings, bertscore, score_vqa, wordnet_unavailable

WORDS = ["a", "red", "papule", "nodule", "lesion", "with", "scale", "on", "the", "arm", "yes", "no", "."]
LONG = " ".join(["a red papule with scale on the arm"] * 12)  # ~96 tokens > 32 positions


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    """A 9-layer BERT with 32 positions whose saved tokenizer states no model_max_length."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-bert")
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS])}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tokenizer = BertTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                  cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")  # fmt: skip
    tokenizer.save_pretrained(folder)
    config = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=9, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32)  # fmt: skip
    BertModel(config).save_pretrained(folder)
    saved = json.loads((folder / "tokenizer_config.json").read_text())
    assert saved.get("model_max_length", 1e30) > 1e20  # what a tokenizer without one reads back as
    return folder


@pytest.fixture
def nltk_path(monkeypatch):
    """NLTK's search path and its WordNet reader as they were before the test: scoring inserts
    folders into the path, and a loaded reader stays loaded (other tests load their own)."""
    import nltk
    from nltk.corpus import wordnet

    monkeypatch.setattr(nltk.data, "path", list(nltk.data.path))
    before = (wordnet.__class__, dict(wordnet.__dict__))
    yield
    wordnet.__class__ = before[0]
    wordnet.__dict__.clear()
    wordnet.__dict__.update(before[1])


def test_bert_without_model_max_length_scores_long_answers(tiny_bert):
    import bert_score

    with pytest.raises(OverflowError):  # what stopped whole runs before
        bert_score.score([LONG], [LONG], model_type=str(tiny_bert), num_layers=9, use_fast_tokenizer=True)
    values, missing = bertscore([LONG, "a red nodule"], [LONG, "a red papule"],
                                ScoreSettings(bertscore_model=str(tiny_bert)))  # fmt: skip
    assert missing is None
    assert values["f1"][0] == pytest.approx(1.0) and 0 < values["f1"][1] < 1


def test_scoring_finds_the_prepared_folder_offline(tiny_bert, tmp_path, monkeypatch, nltk_path):
    home = tmp_path / "metrics"
    monkeypatch.setenv(HOME_ENV, str(home))
    assert metrics_home() == home
    assert resolve_bertscore_model("bert-base-uncased") == "bert-base-uncased"  # nothing placed yet
    shutil.copytree(tiny_bert, bertscore_folder("bert-base-uncased"))
    _write_minimal_wordnet(home / "nltk_data")
    assert resolve_bertscore_model("bert-base-uncased") == str(home / "bertscore" / "bert-base-uncased")
    assert resolve_bertscore_model(str(tiny_bert)) == str(tiny_bert)  # a folder is used as given
    assert wordnet_unavailable() is None
    samples = [VQASample("Q?", "A tumour on the arm.", "A growth on the arm.", modality="clinical")]
    result = score_vqa(samples, ["paper"], ScoreSettings())  # the paper's model name, found locally
    assert result.unavailable == {}
    overall = result.metrics["paper"]["overall"]
    assert 0 < overall["meteor"] < 1 and 0 < overall["bertscore_f1"] <= 1 + 1e-6  # float32 cosine of equal texts


def test_missing_resources_name_prepare_metrics(tmp_path, monkeypatch, nltk_path):
    import nltk

    monkeypatch.setenv(HOME_ENV, str(tmp_path / "empty"))
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "nothing")])
    missing = wordnet_unavailable()
    assert missing and "skinvl eval prepare-metrics" in missing["fix"]
    _, failed = bertscore(["a"], ["b"], ScoreSettings(bertscore_model=str(tmp_path / "no-such-bert")))
    assert failed and "skinvl eval prepare-metrics" in failed["fix"]


def _nltk_index(root: Path) -> str:
    """A file:// NLTK index offering the WordNet stand-in as package `wordnet`."""
    _write_minimal_wordnet(root / "src")
    archive = root / "wordnet.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted((root / "src" / "corpora").rglob("*")):
            zf.write(path, path.relative_to(root / "src" / "corpora"))
    unzipped = sum(p.stat().st_size for p in (root / "src").rglob("*") if p.is_file())
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    (root / "index.xml").write_text(
        '<?xml version="1.0"?>\n<nltk_data><packages>'
        f'<package id="wordnet" name="WordNet" url="{archive.as_uri()}" size="{archive.stat().st_size}" '
        f'unzipped_size="{unzipped}" checksum="{md5}" subdir="corpora" unzip="1" />'
        "</packages><collections /></nltk_data>\n"
    )
    return (root / "index.xml").as_uri()


def test_prepare_metrics_downloads_both_and_checks_they_load(tiny_bert, tmp_path, nltk_path):
    index = _nltk_index(tmp_path / "nltk-mirror")
    target = tmp_path / "metrics"
    code = (
        "import json, sys\n"
        "from huggingface_hub import HfApi\n"
        "from skinvl.cli import main\n"
        "api = HfApi()\n"
        "api.create_repo('alice/tiny-bert')\n"
        "api.upload_folder(repo_id='alice/tiny-bert', folder_path=sys.argv[1])\n"
        "rc = main(['eval', 'prepare-metrics', '--to', sys.argv[2], '--bertscore-model', 'alice/tiny-bert',\n"
        "           '--nltk-index-url', sys.argv[3]])\n"
        "print(json.dumps({'rc': rc}))\n"
    )
    with HubServer({"tok-alice": HubUser("alice")}) as hub:
        env = client_env(hub, tmp_path / "hf-home", "tok-alice")
        env["NLTK_DATA"] = str(tmp_path / "nltk-mirror")  # NLTK opens file:// URLs under its roots only
        result, output = run_python(code, str(tiny_bert), str(target), index, env=env, cwd=tmp_path)
    assert result["rc"] == 0, output
    assert (target / "nltk_data" / "corpora" / "wordnet" / "lexnames").is_file()
    placed = target / "bertscore" / "alice--tiny-bert"
    assert sorted(p.name for p in placed.iterdir() if p.is_file()) == [
        "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    assert f"BERTScore model: {placed}" in output and f"{HOME_ENV}={target}" in output


def test_prepare_metrics_without_network_is_one_line_and_exit_2(tmp_path, capsys):
    from skinvl.cli import main

    rc = main(["eval", "prepare-metrics", "--to", str(tmp_path / "m"),
               "--nltk-index-url", (tmp_path / "no-index.xml").as_uri()])  # fmt: skip
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: WordNet could not be downloaded into")
