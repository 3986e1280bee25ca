"""Publish a SkinVL checkpoint folder to the Hugging Face Hub: model card + one-commit push.

``skinvl push FOLDER REPO_ID`` (or :func:`push_model_folder`) does, in order:

1. cheap checks of the folder (config, weights as safetensors, processor/tokenizer files, the
   remote-code files that ``trust_remote_code`` loading needs, README.md metadata);
2. offline/token/endpoint checks, failing in about a second with a message that says what to do
   (no 20-second retry loop): ``HF_HUB_OFFLINE``, no token, unreachable endpoint, rejected or
   read-only token;
3. a full load of the model with ``AutoModelForImageTextToText`` and of the processor with
   ``AutoProcessor`` (after ``import skinvl``), refusing missing/unexpected/mis-shaped weights;
4. ONE commit with ``HfApi.create_commit`` (large files go through the Hub's LFS/Xet path),
   with ``parent_commit`` set to the branch head read before uploading, so a concurrent push makes
   it fail instead of silently interleaving. Files that did not change are not re-sent and an
   unchanged folder makes no commit at all. Files on the branch that are not in the folder are
   deleted in the same commit (``.gitattributes`` excepted), so the repo mirrors the folder.

A failure anywhere before the commit request leaves the repository at its previous commit: the
Hub applies a commit's operations all together or not at all.

The model card (README.md) is rendered from ``cards/model_card.md.jinja`` with Jinja2 when the
folder has none or when evaluation results are given (``--results results.json``, the file
written by ``skinvl eval``): YAML metadata (library_name, pipeline_tag, base_model, datasets,
license, tags, model-index) and a body with loading snippets, prompt templates, intended and
out-of-scope use, the training recipe, results and the citation.

Tokens come from ``token=``, ``HF_TOKEN`` or the cached login (``hf auth login``); they are never
printed or logged, and error messages are scrubbed of them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_BASE_MODEL = "microsoft/llava-med-v1.5-mistral-7b"
MODEL_CARD_TEMPLATE = "model_card.md.jinja"
# cards/ in a source checkout (and editable installs); mm_skin_cards/ beside the package in a wheel.
CARDS_DIR = next(
    (d for d in (Path(__file__).resolve().parents[1] / n for n in ("cards", "mm_skin_cards")) if d.is_dir()),
    Path(__file__).resolve().parents[1] / "cards",
)
CARD_TAGS = [
    "medical",
    "dermatology",
    "skin",
    "vision-language",
    "image-text-to-text",
    "llava",
    "skinvl",
    "mm-skin",
]
# Hyper-parameters of the released SkinVL weights (DESIGN.md 1.2; the authors' LoRA script).
PAPER_RECIPE = [
    ("Starting point", f"[{DEFAULT_BASE_MODEL}](https://huggingface.co/{DEFAULT_BASE_MODEL})"),
    ("Method", "LoRA on all linear layers of the language model, then merged"),
    ("LoRA r / alpha / dropout", "128 / 64 / 0.05"),
    ("Projector", "trained fully, learning rate 2e-5"),
    ("Vision tower", "frozen"),
    ("Learning rate / schedule", "5e-5, cosine, warm-up ratio 0.02"),
    ("Weight decay", "0.01"),
    ("Epochs / batch", "1 epoch, 16 per GPU"),
    ("Precision / length", "bf16, max length 2048, gradient checkpointing"),
    ("Prompt in training", "`vicuna_v1`"),
    ("Images", "padded to a square in the CLIP mean colour"),
]
# Files that must never be published from a checkpoint folder.
_SKIP_DIRS = {".git", ".cache", "__pycache__", ".ipynb_checkpoints"}
_SKIP_SUFFIXES = (".pyc", ".lock")
_PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")
# Display names of evaluation metrics (keys of skinvl.evaluation results.json).
_METRIC_NAMES = {
    "bleu_1": "BLEU-1",
    "bleu_2": "BLEU-2",
    "bleu_3": "BLEU-3",
    "bleu_4": "BLEU-4",
    "rouge_1": "ROUGE-1",
    "rouge_2": "ROUGE-2",
    "rouge_l": "ROUGE-L",
    "meteor": "METEOR",
    "bertscore_precision": "BERTScore-P",
    "bertscore_recall": "BERTScore-R",
    "bertscore_f1": "BERTScore-F1",
    "bertscore": "BERTScore",
    "token_recall": "Token recall",
    "sacrebleu": "SacreBLEU",
    "yes_no_accuracy": "Yes/no accuracy",
    "yes_no_f1": "Yes/no F1",
    "accuracy": "Accuracy",
    "balanced_accuracy": "Balanced accuracy",
    "macro_f1": "Macro F1",
    "f1": "F1",
    "precision": "Precision",
    "recall": "Recall",
    "auroc": "AUROC",
    "ece": "Calibration error",
}
_COUNT_KEYS = {"n", "yes_no_count", "n_samples", "support"}


class PushError(RuntimeError):
    """A push that was refused or failed; the message says what happened and what to do."""


class FolderValidationError(PushError):
    """The folder is not a publishable model checkpoint (nothing was uploaded)."""


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
    for path in paths:
        path = Path(path)
        if path.is_dir():
            path = path / "results.json"
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise PushError(f"results file {path} does not exist") from None
        except json.JSONDecodeError as exc:
            raise PushError(f"results file {path} is not valid JSON: {exc}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("metrics"), dict):
            raise PushError(
                f"results file {path} has no 'metrics' object: pass the results.json written by "
                "`skinvl eval` (schema_version 1)"
            )
        doc = dict(doc)
        doc["_path"] = str(path)
        docs.append(doc)
    return docs


def _metric_groups(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{protocol: {metric: value}}`` whether metrics are per protocol or flat."""
    metrics = doc["metrics"]
    if metrics and all(isinstance(v, dict) for v in metrics.values()):
        return metrics
    return {"": metrics}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _percent(value: Any) -> str:
    return "n/a" if not _is_number(value) else f"{100 * value:.2f}"


def _dataset_label(doc: dict[str, Any]) -> tuple[str, str]:
    """(dataset id for model-index ``type``, human name)."""
    dataset = doc.get("dataset")
    config = doc.get("config")
    name = Path(str(dataset)).name if dataset else "MM-Skin"
    # A local folder path is not a dataset id: keep the Hub id form only when it looks like one.
    dataset_id = (
        str(dataset)
        if dataset and str(dataset).count("/") == 1 and not Path(str(dataset)).exists()
        else "mm-skin"
    )
    human = f"{name} ({config})" if config else name
    return dataset_id, human


def results_to_eval_results(docs: Sequence[dict[str, Any]], model_name: str) -> list[Any]:
    """model-index entries (``huggingface_hub.EvalResult``) for the numeric overall metrics."""
    from huggingface_hub import EvalResult

    out = []
    for doc in docs:
        task = doc.get("task") or "vqa"
        task_type = {"vqa": "visual-question-answering"}.get(task, "image-classification")
        dataset_id, human = _dataset_label(doc)
        for protocol, metrics in _metric_groups(doc).items():
            for key, value in metrics.items():
                if key in _COUNT_KEYS or not _is_number(value):
                    continue  # unavailable metrics are listed in the card body, never as 0
                label = _METRIC_NAMES.get(key, key)
                out.append(
                    EvalResult(
                        task_type=task_type,
                        dataset_type=dataset_id,
                        dataset_name=human,
                        dataset_config=doc.get("config"),
                        dataset_split=doc.get("split"),
                        metric_type=key,
                        metric_value=round(100 * float(value), 2),
                        metric_name=f"{label} ({protocol} protocol, x100)"
                        if protocol
                        else f"{label} (x100)",
                        metric_config=protocol or None,
                    )
                )
    return out


def _result_blocks(docs: Sequence[dict[str, Any]]) -> list[_ResultBlock]:
    blocks = []
    for doc in docs:
        _, human = _dataset_label(doc)
        per_group = doc.get("per_modality") or {}
        for protocol, overall in _metric_groups(doc).items():
            columns = [k for k in overall if k not in _COUNT_KEYS]
            groups = {"overall": overall, **(per_group.get(protocol) or {})}
            first_n = overall.get("n", doc.get("n_samples"))
            block = _ResultBlock(
                title=f"{human}" + (f", `{protocol}` protocol" if protocol else ""),
                description=(
                    f"Scores x100 on {doc.get('n_samples', first_n) or 'the'} samples"
                    + (f" of split `{doc['split']}`" if doc.get("split") else "")
                    + (
                        f"; decoding `{doc['decoding'].get('name')}`"
                        if isinstance(doc.get("decoding"), dict)
                        else ""
                    )
                    + (f"; prompt template `{doc['template']}`" if doc.get("template") else "")
                    + "."
                ),
                first_column="Group (n)",
                columns=[_METRIC_NAMES.get(c, c) for c in columns],
            )
            for group, metrics in groups.items():
                n = metrics.get("n")
                block.rows.append(
                    {
                        "name": f"{group} ({n})" if n is not None else group,
                        "values": [_percent(metrics.get(c)) for c in columns],
                    }
                )
            unavailable = doc.get("unavailable") or {}
            for metric, reason in (
                sorted(unavailable.items()) if isinstance(unavailable, dict) else []
            ):
                if isinstance(reason, dict):
                    text = str(reason.get("reason", "")).strip()
                    if reason.get("fix"):
                        text += f" Fix: `{reason['fix']}`"
                else:
                    text = str(reason)
                label = _METRIC_NAMES.get(metric, metric)
                block.notes.append(f"{label} not computed (reported as n/a, never 0): {text}")
            blocks.append(block)
    return blocks


# --------------------------------------------------------------------------- model card
def _template_text() -> str:
    """The model-card template from ``cards/`` beside the package."""
    path = CARDS_DIR / MODEL_CARD_TEMPLATE
    if not path.is_file():
        raise PushError(f"model card template {path} not found: reinstall mm-skin from a source checkout")
    return path.read_text(encoding="utf-8")


def _count_parameters(folder: Path) -> int | None:
    """Parameter count from the safetensors headers (reads no tensor data)."""
    from safetensors import safe_open

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for file in files:
        with safe_open(str(file), framework="np") as f:
            for key in f.keys():
                total += _prod(f.get_slice(key).get_shape())
    return total


def _prod(shape: Sequence[int]) -> int:
    out = 1
    for dim in shape:
        out *= int(dim)
    return out


def _human_count(n: int | None) -> str:
    if n is None:
        return "unknown"
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit} ({n:,})"
    return f"{n:,}"


def _architecture(config: dict[str, Any], folder: Path | None) -> dict[str, Any]:
    text = config.get("text_config") or {}
    vision = config.get("vision_config") or {}
    image_size, patch = vision.get("image_size"), vision.get("patch_size")
    tokens = (image_size // patch) ** 2 if image_size and patch else "?"
    act = config.get("projector_hidden_act", "gelu")
    weights = "unknown"
    if folder is not None:
        st = sorted(p.name for p in folder.glob("*.safetensors"))
        weights = f"safetensors, {len(st)} file(s), dtype {config.get('dtype') or config.get('torch_dtype') or 'float32'}"
    return {
        "architecture": (config.get("architectures") or ["SkinVLForConditionalGeneration"])[0],
        "model_type": config.get("model_type", "skinvl"),
        "parameters": _human_count(_count_parameters(folder) if folder is not None else None),
        "vision": f"CLIP ViT ({vision.get('num_hidden_layers', '?')} layers, width {vision.get('hidden_size', '?')}, "
        f"patch {patch or '?'}), features from layer {config.get('vision_feature_layer', -2)}",
        "projector": f"2-layer MLP ({act})",
        "text_model": (text.get("model_type") or "mistral").capitalize(),
        "text": f"{(text.get('model_type') or 'mistral').capitalize()} ({text.get('num_hidden_layers', '?')} layers, "
        f"width {text.get('hidden_size', '?')}, vocabulary {text.get('vocab_size', '?')})",
        "image_size": image_size or "?",
        "image_tokens": tokens,
        "weights": weights,
    }


def render_model_card(
    folder: str | Path | None,
    repo_id: str,
    *,
    config: dict[str, Any] | None = None,
    results: Sequence[dict[str, Any]] | Sequence[str | Path] | None = None,
    base_model: str | list[str] | None = DEFAULT_BASE_MODEL,
    datasets: str | list[str] | None = None,
    license: str = "other",
    license_name: str | None = "research-only",
    recipe: Sequence[tuple[str, str]] | None = None,
) -> str:
    """Render the model card (README.md text) from a checkpoint folder's config and eval results.

    ``results`` are ``results.json`` documents (dicts) or paths to them; their numeric overall
    metrics become the card's ``model-index`` (x100, as the paper reports) and per-group tables.
    ``datasets`` defaults to ``{namespace}/mm-skin``. The output is deterministic (no dates), so
    rendering twice for the same inputs gives the same bytes.
    """
    import jinja2
    from huggingface_hub import ModelCardData

    folder = Path(folder) if folder is not None else None
    if config is None:
        if folder is None:
            raise ValueError("render_model_card needs a folder or a config dict")
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    docs = list(results or [])
    if docs and not isinstance(docs[0], dict):
        docs = load_results(docs)  # type: ignore[arg-type]
    namespace, _, name = repo_id.rpartition("/")
    if datasets is None:
        datasets = [f"{namespace}/mm-skin"] if namespace else ["mm-skin"]
    datasets_list = [datasets] if isinstance(datasets, str) else list(datasets)
    base_list = (
        []
        if not base_model
        else ([base_model] if isinstance(base_model, str) else list(base_model))
    )
    arch = _architecture(config, folder)
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag="image-text-to-text",
        base_model=base_list or None,
        datasets=datasets_list or None,
        license=license,
        license_name=license_name if license == "other" else None,
        language=["en"],
        tags=CARD_TAGS,
        model_name=name or repo_id,
        eval_results=results_to_eval_results(docs, name or repo_id) or None,
        **({"base_model_relation": "finetune"} if base_list else {}),
    )
    n_params = _count_parameters(folder) if folder is not None else None
    tiny_note = None
    if n_params is not None and n_params < 50_000_000:
        tiny_note = (
            f"This checkpoint is test-sized ({n_params:,} parameters): it has the SkinVL "
            "architecture at toy scale and its answers are not meaningful. Use it to test "
            "pipelines, not to study dermatology."
        )
    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    text = env.from_string(_template_text()).render(
        card_yaml=card_data.to_yaml(),
        title=name or repo_id,
        repo_id=repo_id,
        arch=arch,
        tiny_note=tiny_note,
        base_models=base_list,
        datasets=datasets_list,
        recipe_intro=(
            "The released SkinVL weights were trained by the authors with the original LLaVA code "
            "and DeepSpeed ZeRO-3; `skinvl train` reproduces the recipe with transformers + peft."
        ),
        recipe=list(recipe or PAPER_RECIPE),
        results=_result_blocks(docs),
        bibtex=(CARDS_DIR / "citation.bib").read_text(encoding="utf-8").strip(),
    )
    # Collapse runs of blank lines left by optional sections.
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text


def check_model_card(text: str, source: str) -> Any:
    """Parse a card with huggingface_hub's card classes (strict); return its ``ModelCard``."""
    from huggingface_hub import ModelCard

    try:
        card = ModelCard(text, ignore_metadata_errors=False)
    except Exception as exc:
        raise FolderValidationError(
            f"{source}: the model card metadata does not parse: {exc}"
        ) from exc
    if not text.lstrip().startswith("---"):
        raise FolderValidationError(
            f"{source}: the model card has no YAML metadata block; delete it to have one rendered"
        )
    return card


# --------------------------------------------------------------------------- folder validation
@dataclass
class ModelFolder:
    """What validation learnt about a checkpoint folder."""

    path: Path
    files: list[Path]  # relative paths to upload
    config: dict[str, Any]
    card_text: str | None  # README.md to upload when rendered (None = the folder's own)


def _list_files(folder: Path) -> list[Path]:
    out = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(part in _SKIP_DIRS for part in rel.parts) or not path.is_file():
            continue
        if path.name.endswith(_SKIP_SUFFIXES) or path.name == ".DS_Store":
            continue
        out.append(rel)
    return out


def inspect_model_folder(
    folder: str | Path,
    *,
    results: Sequence[str | Path] | None = None,
    repo_id: str = "user/model",
    base_model: str | None = DEFAULT_BASE_MODEL,
    datasets: str | list[str] | None = None,
) -> ModelFolder:
    """Cheap structural checks of a checkpoint folder (no model load); raises FolderValidationError."""
    path = Path(folder)
    if not path.is_dir():
        raise FolderValidationError(
            f"{path}: not a folder (give the folder written by save_pretrained)"
        )
    config_path = path / "config.json"
    if not config_path.is_file():
        raise FolderValidationError(
            f"{path}: config.json is missing; save the model with model.save_pretrained({str(path)!r})"
        )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise FolderValidationError(f"{config_path}: not valid JSON ({exc})") from None
    files = _list_files(path)
    names = {str(f) for f in files}
    if names & set(_PICKLE_WEIGHTS) or any(n.startswith("pytorch_model-") for n in names):
        raise FolderValidationError(
            f"{path}: weights are pickled (pytorch_model*.bin); re-save with "
            "model.save_pretrained(folder) to get safetensors, which the Hub and transformers prefer"
        )
    if "model.safetensors.index.json" in names:
        index = json.loads((path / "model.safetensors.index.json").read_text(encoding="utf-8"))
        shards = sorted(set((index.get("weight_map") or {}).values()))
        missing = [s for s in shards if s not in names]
        if not shards or missing:
            raise FolderValidationError(
                f"{path}/model.safetensors.index.json lists shard(s) that are not in the folder: "
                f"{missing or '(empty weight_map)'}"
            )
    elif "model.safetensors" not in names:
        raise FolderValidationError(
            f"{path}: no model.safetensors (or sharded index) found; save the weights with save_pretrained"
        )
    if not ({"processor_config.json", "preprocessor_config.json"} & names):
        raise FolderValidationError(
            f"{path}: no processor_config.json / preprocessor_config.json; save the processor too: "
            "processor.save_pretrained(folder)"
        )
    if not ({"tokenizer.json", "tokenizer.model"} & names):
        raise FolderValidationError(
            f"{path}: no tokenizer (tokenizer.json or tokenizer.model); save the processor too"
        )
    # Loading without our package needs auto_map + the module files next to the weights.
    if config.get("model_type") == "skinvl":
        auto_map = config.get("auto_map") or {}
        for auto_class in ("AutoConfig", "AutoModelForImageTextToText"):
            if auto_class not in auto_map:
                raise FolderValidationError(
                    f"{config_path}: auto_map has no {auto_class}, so the Hub copy could not be loaded with "
                    "trust_remote_code=True; save it with skinvl's save_pretrained (which registers the auto classes)"
                )
        for reference in auto_map.values():
            reference = reference[0] if isinstance(reference, list) else reference
            if reference and "--" not in reference:
                module = reference.split(".")[0] + ".py"
                if module not in names:
                    raise FolderValidationError(
                        f"{path}: config.json auto_map refers to {module}, which is not in the folder"
                    )
        processor_file = path / "processor_config.json"
        if processor_file.is_file():
            processor_config = json.loads(processor_file.read_text(encoding="utf-8"))
            if "AutoProcessor" not in (processor_config.get("auto_map") or {}):
                warnings.warn(
                    f"{processor_file} has no auto_map.AutoProcessor: without the skinvl package, "
                    "AutoProcessor.from_pretrained(..., trust_remote_code=True) on the Hub copy will "
                    "not build SkinVLProcessor (it falls back to the tokenizer alone)",
                    UserWarning,
                    stacklevel=2,
                )
    card_text = None
    readme = path / "README.md"
    if results or not readme.is_file():
        card_text = render_model_card(
            path,
            repo_id,
            config=config,
            results=list(results or []),
            base_model=base_model,
            datasets=datasets,
        )
        check_model_card(card_text, "rendered model card")
    else:
        check_model_card(readme.read_text(encoding="utf-8"), str(readme))
    return ModelFolder(path=path, files=files, config=config, card_text=card_text)


def check_model_loads(folder: str | Path) -> None:
    """Load the model and processor as a user would (after ``import skinvl``); refuse on any problem."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    import skinvl  # noqa: F401 - registers SkinVL with the Auto classes

    path = Path(folder)
    try:
        model, info = AutoModelForImageTextToText.from_pretrained(
            # report mis-shaped tensors ourselves (by name) instead of transformers' bare RuntimeError
            str(path),
            output_loading_info=True,
            ignore_mismatched_sizes=True,
        )
    except Exception as exc:
        raise FolderValidationError(
            f"{path}: AutoModelForImageTextToText.from_pretrained failed: {type(exc).__name__}: {exc}"
        ) from exc
    problems = []
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        keys = sorted(str(k) for k in info.get(kind) or ())
        if keys:
            problems.append(
                f"{kind.replace('_', ' ')}: {', '.join(keys[:5])}"
                + (" ..." if len(keys) > 5 else "")
            )
    if info.get("error_msgs"):
        problems.append("errors: " + "; ".join(map(str, info["error_msgs"]))[:500])
    if problems:
        raise FolderValidationError(
            f"{path}: the weights do not match the configuration ({'; '.join(problems)})"
        )
    del model
    try:
        AutoProcessor.from_pretrained(str(path))
    except Exception as exc:
        raise FolderValidationError(
            f"{path}: AutoProcessor.from_pretrained failed: {type(exc).__name__}: {exc}"
        ) from exc


# --------------------------------------------------------------------------- hub access
def _scrub(text: str, token: str | None) -> str:
    return text.replace(token, "***") if token else text


def _token_source(token: str | None) -> tuple[str | None, str]:
    """The token to use and where it came from (for messages; never the token itself)."""
    from huggingface_hub import constants, get_token

    if token:
        return token, "the token argument"
    if os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN"):
        return get_token(), "HF_TOKEN"
    found = get_token()
    return found, f"the cached login ({constants.HF_TOKEN_PATH})" if found else "nowhere"


def connect(
    token: str | None = None, endpoint: str | None = None
) -> tuple[Any, str, dict[str, Any]]:
    """Check offline mode, token and endpoint quickly; return ``(HfApi, token, whoami)``.

    Fails in about a second with a :class:`PushError` that says what to do, instead of letting
    huggingface_hub's backoff retry for ~20 s when the network is missing.
    """
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import HfHubHTTPError

    endpoint = (endpoint or constants.ENDPOINT).rstrip("/")
    if constants.HF_HUB_OFFLINE:
        raise PushError(
            "offline mode is on (HF_HUB_OFFLINE=1 or TRANSFORMERS_OFFLINE=1): set HF_HUB_OFFLINE=0 "
            "in the environment to push"
        )
    resolved, source = _token_source(token)
    if not resolved:
        raise PushError(
            "no Hugging Face token found: set HF_TOKEN to a token with write access "
            f"({endpoint}/settings/tokens) or run `hf auth login`"
        )
    api = HfApi(endpoint=endpoint, token=resolved)
    try:
        who = api.whoami(token=resolved, cache=False)
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status == 401:
            raise PushError(
                f"the Hub at {endpoint} rejected the token from {source} (401 Unauthorized): "
                f"create a token with write access at {endpoint}/settings/tokens and set HF_TOKEN "
                "or run `hf auth login --force`"
            ) from None
        raise PushError(
            _scrub(f"the Hub at {endpoint} answered {status} to whoami: {exc}", resolved)
        ) from None
    except (
        Exception
    ) as exc:  # connection refused, DNS failure, timeout: no network or wrong HF_ENDPOINT
        raise PushError(
            f"cannot reach the Hub at {endpoint} ({type(exc).__name__}: {_scrub(str(exc), resolved)}); "
            "check the network connection and HF_ENDPOINT"
        ) from None
    role = ((who.get("auth") or {}).get("accessToken") or {}).get("role")
    if role == "read":
        raise PushError(
            f"the token from {source} is read-only: pushing needs a token with write access"
        )
    return api, resolved, who


def _remote_files(api: Any, repo_id: str, revision: str) -> set[str]:
    from huggingface_hub.errors import RemoteEntryNotFoundError, RevisionNotFoundError

    try:
        return {
            f.path
            for f in api.list_repo_tree(repo_id, revision=revision, recursive=True)
            if hasattr(f, "size")
        }
    except (RemoteEntryNotFoundError, RevisionNotFoundError):
        return set()


def push_model_folder(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
    results: Sequence[str | Path] | None = None,
    base_model: str | None = DEFAULT_BASE_MODEL,
    datasets: str | list[str] | None = None,
    endpoint: str | None = None,
    delete_missing: bool = True,
) -> str | None:
    """Validate a SkinVL checkpoint folder and publish it to ``repo_id`` in ONE commit.

    Returns the commit URL, or None when the repository already held exactly these files (no
    commit is made). ``revision`` is a branch (created from main if missing). ``results`` are
    ``results.json`` files from ``skinvl eval``; given, or when the folder has no README.md, the
    card is rendered (see :func:`render_model_card`). ``endpoint`` overrides ``HF_ENDPOINT``.
    Raises :class:`FolderValidationError` before any upload when the folder is not publishable,
    and :class:`PushError` for token/network/Hub failures (the repo then stays at its previous
    commit).
    """
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete
    from huggingface_hub.errors import HfHubHTTPError

    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise PushError(
            f"repo id {repo_id!r} must look like NAMESPACE/NAME (e.g. my-org/skinvl-pubmm)"
        )
    model_folder = inspect_model_folder(
        folder, results=results, repo_id=repo_id, base_model=base_model, datasets=datasets
    )
    api, resolved, _ = connect(token, endpoint)
    check_model_loads(model_folder.path)
    branch = revision or "main"
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if branch != "main":
            api.create_branch(repo_id, branch=branch, exist_ok=True, repo_type="model")
        head = api.repo_info(repo_id, revision=branch, repo_type="model").sha
        operations: list[Any] = []
        for rel in model_folder.files:
            if rel.as_posix() == "README.md" and model_folder.card_text is not None:
                continue
            operations.append(
                CommitOperationAdd(
                    path_in_repo=rel.as_posix(), path_or_fileobj=str(model_folder.path / rel)
                )
            )
        if model_folder.card_text is not None:
            operations.append(
                CommitOperationAdd(
                    path_in_repo="README.md", path_or_fileobj=model_folder.card_text.encode()
                )
            )
        if delete_missing:
            local = {op.path_in_repo for op in operations}
            stale = sorted(_remote_files(api, repo_id, branch) - local - {".gitattributes"})
            operations += [CommitOperationDelete(path_in_repo=p, is_folder=False) for p in stale]
        info = api.create_commit(
            repo_id,
            operations=operations,
            commit_message=commit_message or f"Upload {repo_id.split('/')[1]} with skinvl push",
            revision=branch,
            parent_commit=head,
            repo_type="model",
        )
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        hint = {
            403: "the token cannot write to this namespace",
            409: "the repository is in a conflicting state",
            412: "someone pushed to the branch meanwhile; run the push again",
        }.get(status or 0, "nothing was committed; the repository is at its previous commit")
        raise PushError(
            _scrub(f"push to {repo_id} failed ({status}): {hint}.\n{exc}", resolved)
        ) from None
    except Exception as exc:
        if isinstance(exc, PushError):
            raise
        raise PushError(
            _scrub(
                f"push to {repo_id} failed ({type(exc).__name__}: {exc}); nothing was committed, "
                "the repository is at its previous commit",
                resolved,
            )
        ) from None
    if info.oid == head:
        return None
    return info.commit_url


# --------------------------------------------------------------------------- CLI
def _cmd_push(args: argparse.Namespace) -> int:
    started = time.monotonic()
    token = os.environ.get("HF_TOKEN")
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            url = push_model_folder(
                args.folder,
                args.repo_id,
                private=args.private,
                revision=args.revision,
                commit_message=args.commit_message,
                results=args.results or None,
                base_model=args.base_model or None,
                datasets=args.dataset or None,
                endpoint=args.endpoint,
                delete_missing=not args.keep_remote_files,
            )
    except FolderValidationError as exc:
        print(f"skinvl push: refused, nothing uploaded: {_scrub(str(exc), token)}", file=sys.stderr)
        return 2
    except PushError as exc:
        print(f"skinvl push: {_scrub(str(exc), token)}", file=sys.stderr)
        return 1
    finally:
        for warning in caught:
            print(f"skinvl push: warning: {_scrub(str(warning.message), token)}", file=sys.stderr)
    elapsed = time.monotonic() - started
    if url is None:
        print(f"{args.repo_id} already holds these files: no new commit ({elapsed:.1f} s)")
    else:
        print(f"pushed {args.folder} to {args.repo_id} in one commit: {url} ({elapsed:.1f} s)")
    return 0


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``push`` sub-command (publishes a checkpoint folder to the Hub)."""
    parser = subparsers.add_parser(
        "push",
        help="validate a SkinVL checkpoint folder and publish it to the Hub in one commit",
        description=(
            "Validate FOLDER (config, safetensors weights, processor, remote-code files, card; the "
            "model must load with AutoModelForImageTextToText), render README.md from "
            "cards/model_card.md.jinja if the folder has none or --results is given, then upload "
            "everything to REPO_ID in ONE commit (large files through LFS). An unchanged folder "
            "makes no commit; a failed push leaves the repo at its previous commit. The token comes "
            "from HF_TOKEN or `hf auth login` and is never printed. Exit codes: 0 pushed or "
            "nothing to do, 1 token/network/Hub error, 2 folder refused."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "folder", help="checkpoint folder written by save_pretrained (model + processor)"
    )
    parser.add_argument("repo_id", help="target model repository, NAMESPACE/NAME")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument(
        "--revision", default=None, help="branch to commit to (created from main if missing)"
    )
    parser.add_argument("--commit-message", default=None, help="commit title")
    parser.add_argument(
        "--results",
        action="append",
        default=[],
        metavar="RESULTS_JSON",
        help="results.json from `skinvl eval` (repeatable); fills the card's model-index and tables",
    )
    parser.add_argument(
        "--base-model", default=DEFAULT_BASE_MODEL, help="base_model recorded in the card"
    )
    parser.add_argument(
        "--dataset",
        action="append",
        default=[],
        metavar="REPO_ID",
        help="training dataset id recorded in the card (repeatable; default NAMESPACE/mm-skin)",
    )
    parser.add_argument(
        "--endpoint", default=None, help="Hub URL (default: HF_ENDPOINT or https://huggingface.co)"
    )
    parser.add_argument(
        "--keep-remote-files",
        action="store_true",
        help="do not delete files of the branch that are absent from FOLDER",
    )
    parser.set_defaults(func=_cmd_push)
