"""``skinvl eval prepare-metrics``: put WordNet and the BERTScore model where scoring finds them
(:mod:`~skinvl.evaluation.metric_resources`), then check that both load offline.

Its own module because the check runs the scorer, which itself looks resources up in
``metric_resources``: keeping the lookup below the scorer and this command above it leaves no circle.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from .metric_resources import BERT_FILES, HOME_ENV, NLTK_FOLDER, bertscore_folder, metrics_home


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
