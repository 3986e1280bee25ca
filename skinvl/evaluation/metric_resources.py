"""The metrics' offline resources: where scoring finds WordNet and the BERTScore model
(:mod:`~skinvl.evaluation.prepare_metrics` puts them there).

METEOR needs NLTK's WordNet corpus and BERTScore a BERT checkpoint (the paper's
``bert-base-uncased``); neither ships with its library. On a machine with internet::

    skinvl eval prepare-metrics                 # into $SKINVL_METRICS_HOME or ~/.cache/skinvl/metrics
    skinvl eval prepare-metrics --to /shared/metrics   # then SKINVL_METRICS_HOME=/shared/metrics

writes ``DIR/nltk_data/corpora/wordnet`` and ``DIR/bertscore/bert-base-uncased`` (config, tokenizer
and safetensors weights), then checks that both load offline. Scoring looks there first: WordNet
through NLTK's data path, the BERTScore model by its name (``--bertscore-model`` or the paper's).
Copying DIR to a machine without internet makes its scores complete there too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

HOME_ENV = "SKINVL_METRICS_HOME"
NLTK_FOLDER = "nltk_data"
BERTSCORE_FOLDER = "bertscore"
# A BERT checkpoint as bert_score loads it: config, tokenizer files, weights (no other formats).
BERT_FILES = ["config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
              "vocab.txt", "model.safetensors"]  # fmt: skip


def skinvl_cache_home() -> Path:
    """skinvl's cache folder: ``$SKINVL_CACHE``, else ``$XDG_CACHE_HOME/skinvl``, else ``~/.cache/skinvl``
    (an empty variable counts as unset)."""
    if os.environ.get("SKINVL_CACHE"):
        return Path(os.environ["SKINVL_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "skinvl"


def metrics_home() -> Path:
    """``$SKINVL_METRICS_HOME``, else ``metrics`` in :func:`skinvl_cache_home`."""
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).expanduser()
    return skinvl_cache_home() / "metrics"


def prepared_nltk_data(home: Path | None = None) -> list[str]:
    """The prepared NLTK data folder, when there is one (scoring adds it to NLTK's path)."""
    folder = (home or metrics_home()) / NLTK_FOLDER
    return [str(folder)] if folder.is_dir() else []


def bertscore_folder(model: str, home: Path | None = None) -> Path:
    """Where prepare-metrics puts BERTScore model ``model`` (a Hub id; '/' becomes '--')."""
    return (home or metrics_home()) / BERTSCORE_FOLDER / model.replace("/", "--")


def resolve_bertscore_model(model: str) -> str:
    """What bert_score should load for ``model``: a local folder as given, else the prepared copy
    of that Hub id when there is one, else the id (the HF cache, or a download when online)."""
    if Path(model).is_dir():
        return model
    prepared = bertscore_folder(model)
    return str(prepared) if (prepared / "config.json").is_file() else model


def cap_tokenizer_length(tokenizer: Any, model: Any) -> None:
    """Cap ``tokenizer.model_max_length`` at the model's position embeddings.

    A tokenizer saved without ``model_max_length`` reads back as 1e30, and bert_score truncates to
    that number: the fast tokenizer then raises OverflowError and the whole run stops.
    """
    positions = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if positions and tokenizer.model_max_length > positions:
        tokenizer.model_max_length = positions


__all__ = ["BERTSCORE_FOLDER", "BERT_FILES", "HOME_ENV", "NLTK_FOLDER", "bertscore_folder", "cap_tokenizer_length",
           "metrics_home", "prepared_nltk_data", "resolve_bertscore_model", "skinvl_cache_home"]
