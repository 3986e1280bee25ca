"""The model card (README.md) of a SkinVL checkpoint, rendered from ``cards/model_card.md.jinja``.

It states only what was done: the architecture read from config.json and the safetensors
headers; the training settings that ``skinvl train`` recorded beside the merged weights
(``training_settings.json``: the run's options plus ``base_model``), or "unknown" when the folder
has none; each evaluation result (``results.json`` of ``skinvl eval``) on its own dataset, scores
x100 as the paper reports them and counts as counts. Rendering is deterministic (no dates).

>>> text = render_model_card("out/merged", "me/skinvl-ft", results=["results/vqa"])  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mm_skin.card import citation as _citation
from mm_skin.card import render_template
from mm_skin.cli import ExitCode
from mm_skin.hub import PushError, is_hub_id
from mm_skin.untrusted import card_code, card_text
from skinvl.training_record import SETTINGS_FILE

MODEL_CARD_TEMPLATE = "model_card.md.jinja"
CARD_TAGS = ["medical", "dermatology", "skin", "vision-language", "image-text-to-text", "llava", "skinvl", "mm-skin"]
# Options of a training run that say where files went, not how the model was trained.
_OPERATIONAL_SETTINGS = {
    "output", "merge", "merge_output", "logging_steps", "save_steps", "save_total_limit",
    "resume_from_checkpoint", "report_to", "num_workers",
}
# Display names of evaluation metrics (keys of skinvl.evaluation results.json).
_METRIC_NAMES = {
    "bleu_1": "BLEU-1", "bleu_2": "BLEU-2", "bleu_3": "BLEU-3", "bleu_4": "BLEU-4",
    "rouge_1": "ROUGE-1", "rouge_2": "ROUGE-2", "rouge_l": "ROUGE-L", "meteor": "METEOR",
    "bertscore_precision": "BERTScore-P", "bertscore_recall": "BERTScore-R", "bertscore_f1": "BERTScore-F1",
    "bertscore": "BERTScore", "token_recall": "Token recall", "sacrebleu": "SacreBLEU",
    "yes_no_accuracy": "Yes/no accuracy", "yes_no_f1": "Yes/no F1", "accuracy": "Accuracy",
    "balanced_accuracy": "Balanced accuracy", "macro_f1": "Macro F1", "macro_precision": "Macro precision",
    "f1": "F1", "precision": "Precision", "recall": "Recall", "auroc": "AUROC", "ece": "Calibration error",
    "unparseable": "Unparseable", "ambiguous": "Ambiguous", "empty_predictions": "Blank predictions",
}
# Keys that are counts even when a writer stored them as floats.
_COUNT_KEYS = {"n", "n_samples", "support", "yes_no_count", "unparseable", "ambiguous", "empty_predictions",
               "yes_no_yes_support", "yes_no_no_support", "judged", "unjudged", "failed"}
_SPLIT_SUFFIX = re.compile(r"[_-](test|train|val|valid|validation)$", re.IGNORECASE)
_FLAG = re.compile(r"\s*\(--[\w-]+[^)]*\)")  # "(--no-bertscore)": a terminal hint, not card text


def _bad_input(message: str) -> PushError:
    return PushError(message, ExitCode.BAD_INPUT)


# --------------------------------------------------------------------------- evaluation results
@dataclass
class _ResultBlock:
    title: str
    description: str
    first_column: str
    columns: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def load_results(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Read evaluation ``results.json`` files (as written by ``skinvl eval``), with clear errors."""
    docs = []
    for path in map(Path, paths):
        path = path / "results.json" if path.is_dir() else path
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise _bad_input(f"results file {path} does not exist") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _bad_input(f"results file {path} is not valid UTF-8 JSON: {exc}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("metrics"), dict):
            raise _bad_input(f"results file {path} has no 'metrics' object: pass the results.json written by "
                             "`skinvl eval` (schema_version 1)")
        docs.append(doc)
    return docs


def _model_info(doc: dict[str, Any]) -> dict[str, Any]:
    info = doc.get("model_info")
    return info if isinstance(info, dict) else {}  # results.json is input: anything may be there


def _model_mismatch(doc: dict[str, Any], folder: Path, repo_id: str, own_hash: Callable[[], str | None]) -> tuple[str, str | None]:
    """``("verified" | "differs" | "unverifiable", why it differs)`` for one result and this card's model.

    ``own_hash`` gives the folder's weights hash (computed once, only when a result recorded one).
    """
    info = _model_info(doc)
    label = f"results {doc.get('name') or doc.get('model') or '(unnamed)'}"
    recorded = info.get("weights_blake2b")
    own = own_hash() if recorded else None
    if recorded and own:
        if recorded == own:
            return "verified", None
        return "differs", f"{label}: model weights blake2b {recorded} differ from {folder}'s {own}"
    name = info.get("model") or doc.get("model")
    if name and hub_id(name):
        return ("verified", None) if name == repo_id else ("differs", f"{label}: made with model {name}, not {repo_id}")
    if name and Path(str(name)).is_dir():
        if Path(str(name)).resolve() == folder.resolve():
            return "verified", None
        return "differs", f"{label}: made with model folder {name}, not {folder}"
    return "unverifiable", None


def check_results_model(docs: Sequence[dict[str, Any]], folder: str | Path, repo_id: str, *, force: bool = False) -> None:
    """Refuse results made with another model than the card's (one line naming both and the fix) unless ``force``.

    With ``force`` each such result is kept and its card table says the model differs. Results whose
    model cannot be verified (a served model, answers scored from a file, a preset) pass with a warning.
    The folder's weights are hashed at most once, and only when a result recorded a hash.
    """
    import functools
    import warnings

    from skinvl.inference.loading import weights_hash

    folder = Path(folder)
    own_hash = functools.cache(lambda: weights_hash(str(folder)))
    for doc in docs:
        status, problem = _model_mismatch(doc, folder, repo_id, own_hash)
        if problem and not force:
            raise _bad_input(f"{problem}; publish results of this model only, or pass --force (the card then says so)")
        if problem:
            doc["model_differs"] = problem
        elif status == "unverifiable":
            warnings.warn(f"results {doc.get('name') or '(unnamed)'}: the model cannot be verified against {folder} "
                          "(no weights hash or Hub id recorded)", UserWarning, stacklevel=2)


def hub_id(value: Any) -> str | None:
    """``value`` when it reads as a Hub repo id (NAMESPACE/NAME, not an existing local path)."""
    text = str(value) if value else ""
    return text if is_hub_id(text) and not Path(text).exists() else None


def _dataset_label(doc: dict[str, Any]) -> tuple[str | None, str]:
    """(Hub dataset id for model-index ``type``, or None for local data; human name) of a result's data."""
    dataset, config = doc.get("dataset"), doc.get("config")
    if not dataset:
        return None, "unrecorded dataset"
    dataset_id = hub_id(dataset)
    # A local folder or label CSV is named by its file in the card, never as MM-Skin, and has no
    # Hub id: model-index's dataset ``type`` must be one, so such results stay out of the metadata.
    name = dataset_id or _SPLIT_SUFFIX.sub("", Path(str(dataset)).stem) or "unnamed local data"
    human = f"{name} ({config})" if config else name
    return dataset_id, human + (" (synthetic data, not MM-Skin)" if doc.get("synthetic_data") else "")


def _metric_groups(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{protocol: {metric: value}}`` whether metrics are per protocol or flat."""
    metrics = doc["metrics"]
    if metrics and all(isinstance(v, dict) for v in metrics.values()):
        return metrics
    return {"": metrics}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_count(key: str, value: Any) -> bool:
    return key in _COUNT_KEYS or isinstance(value, int) and not isinstance(value, bool)


def _cell(key: str, value: Any) -> str:
    """A score x100 with two decimals, a count as a whole number, ``n/a`` when not computed."""
    if not _is_number(value):
        return "n/a"
    return f"{int(value):,}" if _is_count(key, value) else f"{100 * value:.2f}"


def results_to_eval_results(docs: Sequence[dict[str, Any]]) -> list[Any]:
    """model-index entries (``huggingface_hub.EvalResult``) for the numeric overall scores (not counts)
    of results computed on a Hub dataset (local data has no dataset id; its tables are in the body)."""
    from huggingface_hub import EvalResult

    out = []
    for doc in docs:
        task_type = "visual-question-answering" if (doc.get("task") or "vqa") == "vqa" else "image-classification"
        dataset_id, human = _dataset_label(doc)
        if dataset_id is None:
            continue
        for protocol, metrics in _metric_groups(doc).items():
            for key, value in metrics.items():
                if _is_count(key, value) or not _is_number(value):
                    continue  # unavailable metrics are listed in the card body, never as 0
                label = _METRIC_NAMES.get(key, key)
                out.append(EvalResult(
                    task_type=task_type, dataset_type=dataset_id, dataset_name=human,
                    dataset_config=doc.get("config"), dataset_split=doc.get("split"),
                    metric_type=key, metric_value=round(100 * float(value), 2),
                    metric_name=f"{label} ({protocol} protocol, x100)" if protocol else f"{label} (x100)",
                    metric_config=protocol or None,
                ))
    return out


def _description(doc: dict[str, Any], n: Any) -> str:
    decoding = doc.get("decoding")
    return (
        f"Scores x100, counts as counts, on {doc.get('n_samples', n) or 'the'} samples"
        + (f" of split `{card_code(doc['split'])}`" if doc.get("split") else "")
        + (f"; decoding `{card_code(decoding.get('name'))}`" if isinstance(decoding, dict) else "")
        + (f"; prompt template `{card_code(doc['template'])}`" if doc.get("template") else "")
        + "."
    )


def _unavailable_notes(doc: dict[str, Any]) -> list[str]:
    """Why a metric is n/a, without the terminal's fix-it hints (flags, commands)."""
    unavailable = doc.get("unavailable") or {}
    notes = []
    for metric, reason in sorted(unavailable.items()) if isinstance(unavailable, dict) else []:
        text = str(reason.get("reason", "") if isinstance(reason, dict) else reason)
        text = _FLAG.sub("", text).strip()
        notes.append(f"{card_text(_METRIC_NAMES.get(metric, metric))} not computed (reported as n/a, never 0)"
                     + (f": {card_text(text)}" if text else "."))
    return notes


def _result_blocks(docs: Sequence[dict[str, Any]]) -> list[_ResultBlock]:
    blocks = []
    for doc in docs:
        dataset_id, human = _dataset_label(doc)
        per_group = doc.get("per_modality") or {}
        for protocol, overall in _metric_groups(doc).items():
            columns = [k for k in overall if k != "n"]
            # Everything from a results.json is data: escaped on its way into the card.
            block = _ResultBlock(
                title=card_text(human) + (f", `{card_code(protocol)}` protocol" if protocol else ""),
                description=_description(doc, overall.get("n")),
                first_column="Group (n)",
                columns=[card_text(_METRIC_NAMES.get(c, c)) + (" (count)" if _is_count(c, overall[c]) else "")
                         for c in columns],
                notes=_unavailable_notes(doc) + ([f"Published with --force: {card_text(doc['model_differs'])}."]
                                                 if doc.get("model_differs") else [])
                + ([] if dataset_id else ["Not in the card's model-index metadata: computed on local data, "
                                          "which has no Hub dataset id."]),
            )
            for group, metrics in {"overall": overall, **(per_group.get(protocol) or {})}.items():
                n = metrics.get("n")
                name = card_text(group)
                block.rows.append({"name": f"{name} ({card_text(n)})" if n is not None else name,
                                   "values": [_cell(c, metrics.get(c)) for c in columns]})
            blocks.append(block)
    return blocks


# --------------------------------------------------------------------------- training settings
def read_training_settings(folder: Path | None) -> dict[str, Any] | None:
    """The settings ``skinvl train`` recorded beside the weights, or None when there are none."""
    path = None if folder is None else folder / SETTINGS_FILE
    if path is None or not path.is_file():
        return None
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _bad_input(f"{path}: not valid UTF-8 JSON ({exc}); fix or delete it") from None
    if not isinstance(settings, dict):
        raise _bad_input(f"{path}: expected a JSON object of training options; fix or delete it")
    return settings


def _setting_value(value: Any) -> str:
    """A recorded option for the card; local paths shortened to their last part (no home folders)."""
    if isinstance(value, list):
        return ", ".join(_setting_value(v) for v in value) or "none"
    if value is None:
        return "none"
    text = str(value)
    if hub_id(text) is None and ("/" in text or "\\" in text):
        text = Path(text).name + " (local)"
    return f"`{card_code(text)}`"


def training_rows(settings: dict[str, Any]) -> list[tuple[str, str]]:
    """(setting, value) rows of a training record: the run's options, then what was run.

    ``settings`` is ``training_settings.json``: ``{"options": {...}, "base_model": ..., ...}`` as
    :mod:`skinvl.training_record` writes it, or a flat dict of options.
    """
    options = settings.get("options") if isinstance(settings.get("options"), dict) else {}
    rows = [(f"`{card_code(k)}`", _setting_value(v)) for k, v in options.items() if k not in _OPERATIONAL_SETTINGS]
    for key, value in settings.items():
        if key == "options" or key in _OPERATIONAL_SETTINGS:
            continue
        if isinstance(value, dict):  # library versions
            value = [f"{name} {version}" for name, version in value.items() if version]
        rows.append((f"`{card_code(key)}`", _setting_value(value)))
    return rows


# --------------------------------------------------------------------------- architecture
def count_parameters(folder: Path) -> int | None:
    """Parameter count from the safetensors headers (reads no tensor data)."""
    from safetensors import safe_open

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for file in files:
        with safe_open(str(file), framework="np") as f:
            total += sum(math.prod(f.get_slice(key).get_shape()) for key in f.keys())
    return total


def _human_count(n: int | None) -> str:
    if n is None:
        return "unknown"
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit} ({n:,})"
    return f"{n:,}"


def _architecture(config: dict[str, Any], folder: Path | None, n_params: int | None) -> dict[str, Any]:
    text = config.get("text_config") or {}
    vision = config.get("vision_config") or {}
    image_size, patch = vision.get("image_size"), vision.get("patch_size")
    text_model = (text.get("model_type") or "mistral").capitalize()
    weights = "unknown"
    if folder is not None:
        dtype = config.get("dtype") or config.get("torch_dtype") or "float32"
        weights = f"safetensors, {len(list(folder.glob('*.safetensors')))} file(s), dtype {dtype}"
    return {
        "architecture": (config.get("architectures") or ["SkinVLForConditionalGeneration"])[0],
        "model_type": config.get("model_type", "skinvl"),
        "parameters": _human_count(n_params),
        "vision": f"CLIP ViT ({vision.get('num_hidden_layers', '?')} layers, width {vision.get('hidden_size', '?')}, "
        f"patch {patch or '?'}), features from layer {config.get('vision_feature_layer', -2)}",
        "projector": f"2-layer MLP ({config.get('projector_hidden_act', 'gelu')})",
        "text_model": text_model,
        "text": f"{text_model} ({text.get('num_hidden_layers', '?')} layers, width {text.get('hidden_size', '?')}, "
        f"vocabulary {text.get('vocab_size', '?')})",
        "image_size": image_size or "?",
        "image_tokens": (image_size // patch) ** 2 if image_size and patch else "?",
        "weights": weights,
    }


# --------------------------------------------------------------------------- the card
def _as_list(value: str | Sequence[str] | None) -> list[str]:
    return [] if not value else [value] if isinstance(value, str) else list(value)


def render_model_card(
    folder: str | Path | None,
    repo_id: str,
    *,
    config: dict[str, Any] | None = None,
    results: Sequence[dict[str, Any]] | Sequence[str | Path] | None = None,
    base_model: str | list[str] | None = None,
    datasets: str | list[str] | None = None,
    license: str = "other",
    license_name: str | None = "research-only",
    training_settings: dict[str, Any] | None = None,
) -> str:
    """Render the model card (README.md text) from a checkpoint folder's config, settings and results.

    ``results`` are ``results.json`` documents (dicts) or paths to them. ``training_settings``
    defaults to the folder's ``training_settings.json``; without one the card says the training
    settings are unknown. ``base_model`` and ``datasets`` are only what is known: given here, else
    what the training record names as Hub ids, else left out (never guessed). A stock LLaVA
    checkpoint (``model_type`` "llava", as ``skinvl convert --format llava`` writes) gets loading
    code without ``trust_remote_code`` and the engines that serve it.
    """
    from huggingface_hub import ModelCardData

    folder = Path(folder) if folder is not None else None
    if config is None:
        if folder is None:
            raise ValueError("render_model_card needs a folder or a config dict")
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    docs = list(results or [])
    if docs and not isinstance(docs[0], dict):
        docs = load_results(docs)  # type: ignore[arg-type]
    settings = training_settings if training_settings is not None else read_training_settings(folder)
    name = repo_id.rpartition("/")[2]
    options = (settings.get("options") if isinstance(settings.get("options"), dict) else settings) if settings else {}
    # What the run read, when those were Hub datasets; local folders are not ids.
    datasets_list = _as_list(datasets) or [d for d in map(hub_id, _as_list(options.get("data"))) if d]
    recorded_base = (settings or {}).get("base_model")
    base_list = _as_list(base_model) or [b for b in [hub_id(recorded_base)] if b]
    card_data = ModelCardData(
        library_name="transformers", pipeline_tag="image-text-to-text", base_model=base_list or None,
        datasets=datasets_list or None, license=license, license_name=license_name if license == "other" else None,
        language=["en"], tags=CARD_TAGS, model_name=name or repo_id,
        eval_results=results_to_eval_results(docs) or None,
        **({"base_model_relation": "finetune"} if base_list else {}),
    )
    n_params = count_parameters(folder) if folder is not None else None
    tiny_note = None
    if n_params is not None and n_params < 50_000_000:
        tiny_note = (f"This checkpoint is test-sized ({n_params:,} parameters): it has the SkinVL architecture "
                     "at toy scale and its answers are not meaningful. Use it to test pipelines, not to study "
                     "dermatology.")
    text = render_template(
        MODEL_CARD_TEMPLATE, card_yaml=card_data.to_yaml(), title=name or repo_id, repo_id=repo_id,
        arch=_architecture(config, folder, n_params), tiny_note=tiny_note, base_models=base_list,
        stock_llava=config.get("model_type") == "llava",
        recorded_base=None if not recorded_base or hub_id(recorded_base) else _setting_value(recorded_base),
        datasets=datasets_list, training=training_rows(settings) if settings else None,
        results=_result_blocks(docs), bibtex=_citation(),
    )
    return re.sub(r"\n{3,}", "\n\n", text)  # blank lines left by optional sections


def check_model_card(text: str, source: str) -> Any:
    """Parse a card with huggingface_hub's card classes (strict); return its ``ModelCard``."""
    from huggingface_hub import ModelCard

    try:
        card = ModelCard(text, ignore_metadata_errors=False)
    except Exception as exc:
        raise _bad_input(f"{source}: the model card metadata does not parse: {exc}") from None
    if not text.lstrip().startswith("---"):
        raise _bad_input(f"{source}: the model card has no YAML metadata block; delete it to have one rendered")
    return card
