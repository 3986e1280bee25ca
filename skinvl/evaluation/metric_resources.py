"""The metrics' offline resources: where scoring finds WordNet and the BERTScore model, and
``skinvl eval prepare-metrics``, which puts them there.

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

import dataclasses
import os
import shutil
from pathlib import Path
from typing import Any

HOME_ENV = "SKINVL_METRICS_HOME"
NLTK_FOLDER = "nltk_data"
BERTSCORE_FOLDER = "bertscore"
# A BERT checkpoint as bert_score loads it: config, tokenizer files, weights (no other formats).
BERT_FILES = ["config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
              "vocab.txt", "model.safetensors"]  # fmt: skip


def metrics_home() -> Path:
    """``$SKINVL_METRICS_HOME``, else ``metrics`` in skinvl's cache (``$SKINVL_CACHE``, else
    ``$XDG_CACHE_HOME/skinvl``, else ``~/.cache/skinvl``: the probe's feature cache rule)."""
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).expanduser()
    cache = os.environ.get("SKINVL_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "skinvl"
    return Path(cache) / "metrics"


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


@dataclasses.dataclass(kw_only=True)
class PrepareMetricsOptions:
    """Options of ``skinvl eval prepare-metrics``."""

    to: str | None = dataclasses.field(default=None, metadata={
        "help": f"folder to fill (default: ${HOME_ENV}, else ~/.cache/skinvl/metrics); point "
        f"${HOME_ENV} at it when it is not the default", "metavar": "DIR"})  # fmt: skip
    bertscore_model: str = dataclasses.field(default="bert-base-uncased", metadata={
        "help": "Hub id of the BERTScore model to place (the paper's by default; HF_ENDPOINT "
        "selects a mirror)"})  # fmt: skip
    nltk_index_url: str | None = dataclasses.field(default=None, metadata={
        "help": "URL of an NLTK data index to download WordNet from (default: NLTK's own)",
        "metavar": "URL"})  # fmt: skip


class PrepareError(Exception):
    """A resource could not be fetched or does not load afterwards (one line, with the fix)."""


def place_wordnet(home: Path, server_index_url: str | None = None) -> Path:
    """Download NLTK's WordNet into ``home/nltk_data`` (``server_index_url``: another NLTK index)."""
    from nltk.downloader import Downloader

    target = home / NLTK_FOLDER
    downloader = Downloader(server_index_url=server_index_url)
    try:
        ok = downloader.download("wordnet", download_dir=str(target), quiet=True, raise_on_error=True)
    except (OSError, ValueError) as err:
        raise PrepareError(f"WordNet could not be downloaded into {target} ({err}); check the "
                           "network (NLTK's index is on raw.githubusercontent.com) and retry") from None  # fmt: skip
    if not ok:
        raise PrepareError(f"WordNet could not be downloaded into {target}; retry with network access")
    return target


def place_bertscore_model(home: Path, model: str) -> Path:
    """Download ``model``'s config, tokenizer and safetensors weights into ``home/bertscore``."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    target = bertscore_folder(model, home)
    try:
        snapshot_download(model, local_dir=target, allow_patterns=BERT_FILES)
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise PrepareError(f"{model} could not be downloaded into {target} ({first}); check the "
                           "model id and the network (HF_HUB_OFFLINE must be unset) and retry") from None  # fmt: skip
    if not (target / "config.json").is_file():
        shutil.rmtree(target, ignore_errors=True)
        raise PrepareError(f"{model}: no config.json on the Hub; give a BERT checkpoint's id")
    return target


def prepare_metrics(options: PrepareMetricsOptions) -> dict[str, str]:
    """Place WordNet and the BERTScore model, then score one pair offline with them.

    Returns where each went (``wordnet``, ``bertscore_model``, ``home``).
    """
    from .scoring import ScoreSettings, bertscore, wordnet_unavailable

    home = Path(options.to).expanduser() if options.to else metrics_home()
    wordnet = place_wordnet(home, options.nltk_index_url)
    bert = place_bertscore_model(home, options.bertscore_model)
    missing = wordnet_unavailable([str(wordnet)])
    if missing:
        raise PrepareError(f"{wordnet}: WordNet was downloaded but does not load ({missing['reason']})")
    settings = ScoreSettings(bertscore_model=str(bert))
    _, failed = bertscore(["A red papule."], ["A red nodule."], settings)
    if failed:
        raise PrepareError(f"{bert}: the model was downloaded but BERTScore fails ({failed['reason']})")
    return {"wordnet": str(wordnet), "bertscore_model": str(bert), "home": str(home)}


def run_prepare_metrics(options: PrepareMetricsOptions) -> int:
    """Handler of ``skinvl eval prepare-metrics``: place, check, say where and how to use it."""
    import sys

    from mm_skin.cli import ExitCode

    try:
        placed = prepare_metrics(options)
    except PrepareError as err:
        print(f"error: {err}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    print(f"WordNet: {placed['wordnet']}\nBERTScore model: {placed['bertscore_model']}")
    if Path(placed["home"]) != metrics_home():
        print(f"scoring finds them with {HOME_ENV}={placed['home']}")
    return ExitCode.OK
