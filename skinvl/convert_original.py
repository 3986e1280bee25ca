"""The authors' checkpoint format (LLaVA ``llava_mistral``): reading it and translating it to SkinVL.

What a checkpoint written by the original LLaVA code (and so the released SkinVL models) holds:

* ``config.json``: ``model_type`` "llava_mistral", the Mistral fields and LLaVA's ``mm_*`` fields.
  ``mm_vision_tower`` names the CLIP checkpoint (an absolute path, a path relative to the
  checkpoint folder, or a Hub id) whose weights the original loader fetched separately.
* weights (safetensors or ``.bin``, single file or sharded with an index): the language model as
  ``model.{embed_tokens,layers,norm}.*`` + ``lm_head.*``, the projector as ``model.mm_projector.0/2``
  (mlp2x_gelu) or ``model.mm_projector.{weight,bias}`` (linear), and sometimes the vision tower as
  ``model.vision_tower.vision_tower.vision_model.*``.
* ``tokenizer.model`` (LLaMA sentencepiece) without an image token: the original code splices image
  features at a -200 placeholder instead.

Translation, in short: the config becomes a ``SkinVLConfig``; keys are renamed while loading; the
vision tower comes from the checkpoint when it is there, otherwise from ``mm_vision_tower``; the
tokenizer is converted to a fast one and given an ``<image>`` token, whose embedding and lm_head rows
are set to the mean of the existing rows (so its logit is never the largest: greedy decoding never
produces it). A linear projector becomes LLaVA's two-layer projector with an identity activation
and an identity second layer (exactly the same function). Every parameter of the resulting model is
either loaded from a file or one of those two constructed pieces; anything else is an error.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import PreTrainedConfig

from .configuration_skinvl import SkinVLConfig
from .modeling_skinvl import SkinVLForConditionalGeneration
from .processing_skinvl import SkinVLProcessor

logger = logging.getLogger(__name__)

#: Original ``model_type`` -> text model type of the translated config.
ORIGINAL_MODEL_TYPES = {"llava_mistral": "mistral"}
IMAGE_TOKEN = "<image>"

SAFE_INDEX = "model.safetensors.index.json"
SAFE_SINGLE = "model.safetensors"
BIN_INDEX = "pytorch_model.bin.index.json"
BIN_SINGLE = "pytorch_model.bin"

# Config keys that belong to LLaVA's multimodal wrapper or training, not to the text model.
_LLAVA_ONLY_KEYS = {
    "architectures", "model_type", "transformers_version", "torch_dtype", "dtype", "_name_or_path",
    "image_aspect_ratio", "image_grid_pinpoints", "tokenizer_model_max_length",
    "tokenizer_padding_side", "use_mm_proj", "tune_mm_mlp_adapter", "freeze_mm_mlp_adapter",
    "unfreeze_mm_vision_tower", "mm_projector_lr", "mm_vision_tower_lr", "use_cache", "auto_map",
}

# Checkpoint keys the original code writes but that are not parameters (recomputed buffers).
_IGNORED_KEY_PATTERNS = (
    re.compile(r"\.rotary_emb\.inv_freq$"),
    re.compile(r"^model\.vision_tower\.vision_tower\.vision_model\.embeddings\.position_ids$"),
)


class OriginalFormatError(ValueError):
    """A checkpoint in the authors' format that cannot be translated faithfully."""


class LlavaMistralConfig(PreTrainedConfig):
    """The authors' ``llava_mistral`` config.json, kept as read (translated by ``translate_config``)."""

    model_type = "llava_mistral"


# --------------------------------------------------------------------------------------------
# Locating files
# --------------------------------------------------------------------------------------------


def is_original_folder(folder: str | os.PathLike) -> bool:
    """True when ``folder`` has a config.json whose ``model_type`` is the authors' format."""
    config_file = Path(folder) / "config.json"
    if not config_file.is_file():
        return False
    try:
        data = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return data.get("model_type") in ORIGINAL_MODEL_TYPES


def resolve_folder(name_or_path: str | os.PathLike, **hub_kwargs: Any) -> Path:
    """Return a local folder for a checkpoint path or Hub id (downloading only the needed files)."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    if path.exists():
        raise OriginalFormatError(f"{path} is a file; pass the checkpoint FOLDER (with config.json).")
    from huggingface_hub import snapshot_download

    allowed = {k: v for k, v in hub_kwargs.items() if k in ("revision", "token", "cache_dir", "local_files_only")}
    try:
        local = snapshot_download(
            str(name_or_path),
            allow_patterns=["*.json", "*.safetensors", "*.bin", "tokenizer.model", "*.jinja"],
            **allowed,
        )
    except Exception as err:  # noqa: BLE001 - hub errors are many; all mean "not found here"
        raise OriginalFormatError(
            f"{name_or_path!r} is neither a local folder nor a Hub repository that could be fetched "
            f"({type(err).__name__}: {err}). Pass a checkpoint folder or a reachable Hub id."
        ) from err
    return Path(local)


def read_original_config(folder: Path) -> dict[str, Any]:
    """Read and check ``folder/config.json`` of an authors'-format checkpoint."""
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise OriginalFormatError(f"{config_file} does not exist: not a checkpoint folder.")
    data = json.loads(config_file.read_text(encoding="utf-8"))
    model_type = data.get("model_type")
    if model_type not in ORIGINAL_MODEL_TYPES:
        raise OriginalFormatError(
            f"{config_file}: model_type {model_type!r} is not the authors' LLaVA format "
            f"({sorted(ORIGINAL_MODEL_TYPES)}); a native SkinVL checkpoint has model_type 'skinvl'."
        )
    for key in ("hidden_size", "num_hidden_layers", "vocab_size"):
        if key not in data:
            raise OriginalFormatError(f"{config_file}: the field {key!r} is missing.")
    merge = data.get("mm_patch_merge_type", "flat")
    if merge != "flat":
        raise OriginalFormatError(
            f"{config_file}: mm_patch_merge_type {merge!r} is not supported (only 'flat', as in SkinVL)."
        )
    if data.get("mm_use_im_start_end") or data.get("mm_use_im_patch_token"):
        raise OriginalFormatError(
            f"{config_file}: mm_use_im_start_end / mm_use_im_patch_token are set; SkinVL checkpoints "
            "use neither and this converter does not translate them."
        )
    return data


@dataclass
class WeightInfo:
    """Where one checkpoint tensor lives and its shape/dtype (read from headers, not data)."""

    file: Path
    shape: tuple[int, ...]
    dtype: str


@dataclass
class CheckpointWeights:
    """All tensors of a checkpoint (one or several shards) by key."""

    folder: Path
    tensors: dict[str, WeightInfo] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)


def _shard_files(folder: Path) -> list[Path]:
    for index_name, single in ((SAFE_INDEX, SAFE_SINGLE), (BIN_INDEX, BIN_SINGLE)):
        index = folder / index_name
        if index.is_file():
            weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map")
            if not isinstance(weight_map, dict) or not weight_map:
                raise OriginalFormatError(f"{index}: no 'weight_map' in the index.")
            files = sorted({folder / name for name in weight_map.values()})
            for file in files:
                if not file.is_file():
                    raise OriginalFormatError(f"{index} lists {file.name}, which does not exist in {folder}.")
            return files
        if (folder / single).is_file():
            return [folder / single]
    raise OriginalFormatError(
        f"{folder}: no weights found (expected {SAFE_SINGLE}, {SAFE_INDEX}, {BIN_SINGLE} or {BIN_INDEX})."
    )


def open_bin(file: Path) -> dict[str, Any]:
    """Load a ``.bin`` state dict safely: ``weights_only=True`` (no arbitrary unpickling), mmap'ed."""
    import torch

    try:
        return torch.load(file, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:
        # Old non-zip .bin files cannot be memory-mapped; still weights_only.
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:
        raise OriginalFormatError(
            f"{file}: cannot be read with torch.load(weights_only=True) ({err}). Only plain tensor "
            "state dicts are accepted; re-save it as safetensors."
        ) from err


def scan_weights(folder: Path) -> CheckpointWeights:
    """List every tensor of the checkpoint in ``folder`` with its file, shape and dtype."""
    from safetensors import safe_open

    result = CheckpointWeights(folder=folder, files=_shard_files(folder))
    for file in result.files:
        if file.suffix == ".safetensors":
            with safe_open(str(file), framework="pt") as handle:
                for key in handle.keys():
                    piece = handle.get_slice(key)
                    result.tensors[key] = WeightInfo(file, tuple(piece.get_shape()), piece.get_dtype())
        else:
            state = open_bin(file)
            for key, tensor in state.items():
                if not hasattr(tensor, "shape"):
                    raise OriginalFormatError(f"{file}: entry {key!r} is not a tensor.")
                result.tensors[key] = WeightInfo(file, tuple(tensor.shape), str(tensor.dtype))
            del state
    return result


# --------------------------------------------------------------------------------------------
# Projector, vision tower, key names
# --------------------------------------------------------------------------------------------


def detect_projector(weights: CheckpointWeights, config: dict[str, Any]) -> str:
    """Return "mlp2x_gelu" or "linear" from the projector's weight names (trusted over config)."""
    names = {k[len("model.mm_projector."):] for k in weights.tensors if k.startswith("model.mm_projector.")}
    declared = config.get("mm_projector_type", "linear")
    if names == {"0.weight", "0.bias", "2.weight", "2.bias"}:
        found = "mlp2x_gelu"
    elif names == {"weight", "bias"}:
        found = "linear"
    elif not names:
        raise OriginalFormatError(
            f"{weights.folder}: no model.mm_projector.* tensors in the weights; the multimodal "
            "projector must be in the checkpoint (a LoRA-only or language-model-only folder cannot "
            "be loaded: merge the projector weights first)."
        )
    else:
        raise OriginalFormatError(
            f"{weights.folder}: projector tensors {sorted('model.mm_projector.' + n for n in names)} "
            f"(config mm_projector_type {declared!r}) match neither 'mlp2x_gelu' (.0/.2) nor "
            "'linear'; only those two projector types are supported."
        )
    if declared != found:
        logger.warning(
            "%s/config.json says mm_projector_type=%r but the weights are a %r projector; using the "
            "weights (the authors' LoRA script left LLaVA's default 'linear' in the config).",
            weights.folder, declared, found,
        )
    return found


def original_key_mapping(projector: str) -> dict[str, str]:
    """Regex renames from original checkpoint keys to SkinVL (= transformers LLaVA) keys."""
    mapping = {
        r"^model\.vision_tower\.vision_tower\.vision_model\.": "model.vision_tower.",
        r"^model\.(embed_tokens|layers|norm)\.": r"model.language_model.\1.",
    }
    if projector == "mlp2x_gelu":
        mapping[r"^model\.mm_projector\.0\."] = "model.multi_modal_projector.linear_1."
        mapping[r"^model\.mm_projector\.2\."] = "model.multi_modal_projector.linear_2."
    else:
        mapping[r"^model\.mm_projector\.(weight|bias)$"] = r"model.multi_modal_projector.linear_1.\1"
    return mapping


def map_key(key: str, mapping: dict[str, str]) -> str | None:
    """Apply ``mapping`` to one original key; None for keys that are not parameters."""
    if any(p.search(key) for p in _IGNORED_KEY_PATTERNS):
        return None
    for pattern, replacement in mapping.items():
        new, count = re.subn(pattern, replacement, key)
        if count:
            return new
    return key


def has_vision_weights(weights: CheckpointWeights) -> bool:
    """True when the checkpoint itself carries the CLIP vision tower."""
    return any(k.startswith("model.vision_tower.vision_tower.vision_model.") for k in weights.tensors)


def resolve_vision_tower(folder: Path, config: dict[str, Any], override: str | None = None) -> str:
    """Where the CLIP vision tower lives: ``override``, else ``mm_vision_tower`` resolved.

    A relative ``mm_vision_tower`` is looked up in the CHECKPOINT folder (not the working
    directory), then as an absolute path, then used as a Hub id.
    """
    value = override if override is not None else config.get("mm_vision_tower", config.get("vision_tower"))
    if not value:
        raise OriginalFormatError(
            f"{folder}/config.json has no mm_vision_tower; pass vision_tower=<CLIP folder or Hub id>."
        )
    candidate = Path(value).expanduser()
    if not candidate.is_absolute() and (folder / candidate).is_dir():
        return str(folder / candidate)
    if candidate.is_dir():
        return str(candidate)
    if candidate.is_absolute() or value.startswith((".", "~")) or value.count("/") > 1:
        raise OriginalFormatError(
            f"{folder}/config.json: mm_vision_tower {value!r} is neither a folder inside the "
            "checkpoint nor an existing path, and cannot be a Hub id; pass vision_tower=<CLIP folder>."
        )
    return value  # a Hub id such as openai/clip-vit-large-patch14-336


def load_vision_config(source: str, **hub_kwargs: Any):
    """Read the CLIP vision config (the ``vision_config`` of a full CLIPModel config, or a vision one)."""
    from transformers import CLIPVisionConfig

    try:
        return CLIPVisionConfig.from_pretrained(source, **hub_kwargs)
    except OSError as err:
        raise OriginalFormatError(
            f"Cannot read the vision tower config from {source!r} ({err}). The checkpoint's "
            "mm_vision_tower must point to a CLIP folder or a reachable Hub id; pass "
            "vision_tower=<local CLIP folder> when offline."
        ) from err


# --------------------------------------------------------------------------------------------
# Config, tokenizer, processor
# --------------------------------------------------------------------------------------------


def translate_config(
    config: dict[str, Any],
    vision_config,
    *,
    projector: str,
    image_token_id: int,
    vocab_size: int,
    template: str = "mistral_instruct",
) -> SkinVLConfig:
    """Translate an original config.json (dict) into a ``SkinVLConfig``."""
    text_type = ORIGINAL_MODEL_TYPES[config["model_type"]]
    text = {k: v for k, v in config.items() if k not in _LLAVA_ONLY_KEYS and not k.startswith("mm_")}
    text.update(model_type=text_type, vocab_size=vocab_size, use_cache=True)
    mm_hidden = config.get("mm_hidden_size")
    if mm_hidden is not None and mm_hidden != vision_config.hidden_size:
        raise OriginalFormatError(
            f"config.json mm_hidden_size={mm_hidden} but the vision tower has hidden_size "
            f"{vision_config.hidden_size}: mm_vision_tower points to the wrong CLIP model."
        )
    select = config.get("mm_vision_select_feature", "patch")
    if select not in ("patch", "cls_patch"):
        raise OriginalFormatError(f"config.json: mm_vision_select_feature {select!r} is not supported.")
    aspect = config.get("image_aspect_ratio", "pad")
    if aspect not in ("pad", "square", None) and aspect != "":
        raise OriginalFormatError(
            f"config.json: image_aspect_ratio {aspect!r} is not supported (only 'pad' or plain)."
        )
    patches = (vision_config.image_size // vision_config.patch_size) ** 2
    dtype = config.get("torch_dtype", config.get("dtype"))
    return SkinVLConfig(
        vision_config=vision_config.to_dict(),
        text_config=text,
        image_token_index=image_token_id,
        image_seq_length=patches + (1 if select == "cls_patch" else 0),
        projector_hidden_act="gelu" if projector == "mlp2x_gelu" else "linear",
        vision_feature_layer=int(config.get("mm_vision_select_layer", -2)),
        vision_feature_select_strategy="default" if select == "patch" else "full",
        multimodal_projector_bias=True,
        tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        prompt_template=template,
        image_aspect_ratio="pad" if aspect == "pad" else "crop",
        dtype=dtype,
    )


def load_original_tokenizer(folder: Path):
    """Load the checkpoint's LLaMA tokenizer as a fast tokenizer with an ``<image>`` token.

    ``legacy=True`` keeps sentencepiece's dummy prefix on every text segment, which reproduces the
    original ``tokenizer_image_token`` (each chunk around ``<image>`` tokenized on its own).
    """
    from tokenizers import AddedToken
    from transformers import AutoTokenizer

    if not any((folder / name).is_file() for name in ("tokenizer.model", "tokenizer.json")):
        raise OriginalFormatError(
            f"{folder}: no tokenizer (tokenizer.model or tokenizer.json). Copy the base model's "
            "tokenizer files (LLaVA-Med v1.5 Mistral / Mistral-7B-Instruct-v0.2) into the folder."
        )
    tokenizer = AutoTokenizer.from_pretrained(str(folder), legacy=True)
    pre = getattr(tokenizer, "_tokenizer", None)
    pre = getattr(pre, "pre_tokenizer", None)
    if pre is not None and getattr(pre, "prepend_scheme", "always") != "always":
        pre.prepend_scheme = "always"
        tokenizer._tokenizer.pre_tokenizer = pre
    tokenizer.init_kwargs["legacy"] = True
    if IMAGE_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_tokens([AddedToken(IMAGE_TOKEN, special=True, normalized=False)], special_tokens=True)
    return tokenizer


def read_image_processor_settings(source: str, vision_config, **hub_kwargs: Any) -> dict[str, Any]:
    """CLIP preprocessing settings from the vision tower's preprocessor_config.json (or defaults)."""
    from transformers.utils import cached_file

    settings: dict[str, Any] = {}
    path = Path(source) / "preprocessor_config.json"
    if not path.is_file():
        try:
            found = cached_file(source, "preprocessor_config.json", _raise_exceptions_for_missing_entries=False,
                                **hub_kwargs)
        except OSError:
            found = None
        path = Path(found) if found else None
    if path is not None and path.is_file():
        settings = json.loads(path.read_text(encoding="utf-8"))
    else:
        logger.warning("No preprocessor_config.json for the vision tower %s; using CLIP defaults.", source)

    def edge(value, default):
        if value is None:
            return default
        if isinstance(value, dict):
            return int(value.get("shortest_edge", value.get("height", default)))
        return int(value)

    size = edge(settings.get("size"), vision_config.image_size)
    crop = edge(settings.get("crop_size"), vision_config.image_size)
    if crop != vision_config.image_size:
        raise OriginalFormatError(
            f"{source}: preprocessor crop size {crop} differs from the vision tower's image_size "
            f"{vision_config.image_size}."
        )
    return {
        "size": size,
        "crop": crop,
        "image_mean": settings.get("image_mean"),
        "image_std": settings.get("image_std"),
        "resample": int(settings.get("resample", 3)),
    }


def build_processor(tokenizer, vision_config, settings: dict[str, Any], *, image_aspect_ratio: str,
                    template: str, processor_class=SkinVLProcessor):
    """Assemble a (SkinVL or stock LLaVA) processor from converted parts."""
    from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

    from .processing_skinvl import build_image_processor, chat_templates

    image_processor = build_image_processor(
        settings["crop"], image_aspect_ratio=image_aspect_ratio, image_mean=settings["image_mean"],
        image_std=settings["image_std"], resample=settings["resample"],
    )
    if settings["size"] != settings["crop"]:
        image_processor = LlavaImageProcessorPil(
            **{**image_processor.to_dict(), "size": {"shortest_edge": settings["size"]}}
        )
    return processor_class(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=vision_config.patch_size,
        vision_feature_select_strategy="default",
        chat_template=chat_templates(template),
        num_additional_image_tokens=1,
    )


@dataclass
class OriginalCheckpoint:
    """Everything needed to load or convert one authors'-format checkpoint."""

    folder: Path
    config: dict[str, Any]
    weights: CheckpointWeights
    projector: str
    vision_in_checkpoint: bool
    vision_source: str
    vision_config: Any
    tokenizer: Any
    skinvl_config: SkinVLConfig
    original_vocab_rows: int


def inspect_original(
    name_or_path: str | os.PathLike,
    *,
    vision_tower: str | None = None,
    template: str = "mistral_instruct",
    **hub_kwargs: Any,
) -> OriginalCheckpoint:
    """Read config, weight headers, vision tower config and tokenizer; translate the config."""
    folder = resolve_folder(name_or_path, **hub_kwargs)
    config = read_original_config(folder)
    weights = scan_weights(folder)
    projector = detect_projector(weights, config)
    vision_source = resolve_vision_tower(folder, config, vision_tower)
    vision_config = load_vision_config(vision_source, **_hub_only(hub_kwargs))
    tokenizer = load_original_tokenizer(folder)
    embed = weights.tensors.get("model.embed_tokens.weight")
    if embed is None:
        raise OriginalFormatError(f"{folder}: the weights have no model.embed_tokens.weight.")
    rows = embed.shape[0]
    image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    skinvl_config = translate_config(
        config, vision_config, projector=projector, image_token_id=image_token_id,
        vocab_size=max(rows, image_token_id + 1), template=template,
    )
    return OriginalCheckpoint(
        folder=folder, config=config, weights=weights, projector=projector,
        vision_in_checkpoint=has_vision_weights(weights), vision_source=vision_source,
        vision_config=vision_config, tokenizer=tokenizer, skinvl_config=skinvl_config,
        original_vocab_rows=rows,
    )


def _hub_only(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if k in ("revision", "token", "cache_dir", "local_files_only")}


def expected_shapes(config: SkinVLConfig) -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes of a SkinVL model for ``config`` (built on the meta device)."""
    import torch

    with torch.device("meta"):
        model = SkinVLForConditionalGeneration(config)
    return {name: tuple(p.shape) for name, p in model.state_dict().items()}


def check_shapes(ckpt: OriginalCheckpoint, expected: dict[str, tuple[int, ...]]) -> None:
    """Fail with file and key when a checkpoint tensor does not fit the translated architecture."""
    mapping = original_key_mapping(ckpt.projector)
    rows = ckpt.original_vocab_rows
    for key, info in ckpt.weights.tensors.items():
        target = map_key(key, mapping)
        if target is None:
            continue
        if target not in expected:
            raise OriginalFormatError(
                f"{info.file}: tensor {key!r} has no place in a SkinVL/LLaVA model (mapped name "
                f"{target!r}); this checkpoint is not a plain LLaVA-Mistral (flat, mlp2x_gelu/linear)."
            )
        want = expected[target]
        if target in ("model.language_model.embed_tokens.weight", "lm_head.weight"):
            want = (rows,) + want[1:]
        if tuple(info.shape) != tuple(want):
            raise OriginalFormatError(
                f"{info.file}: tensor {key!r} has shape {list(info.shape)} but config.json implies "
                f"{list(want)} for {target!r}; the config and the weights disagree."
            )


# --------------------------------------------------------------------------------------------
# One-call loading
# --------------------------------------------------------------------------------------------

_FROM_PRETRAINED_PASSTHROUGH = (
    "dtype", "torch_dtype", "device_map", "max_memory", "offload_folder", "attn_implementation",
    "low_cpu_mem_usage", "quantization_config",
)


@contextlib.contextmanager
def quiet_transformers():
    """Silence transformers' load reports for loads whose key accounting is done here."""
    from transformers.utils import logging as hf_logging

    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)


def load_original_model(name_or_path: str | os.PathLike, *, vision_tower: str | None = None,
                        **kwargs: Any) -> SkinVLForConditionalGeneration:
    """Load an authors'-format checkpoint as a ``SkinVLForConditionalGeneration`` in one call.

    ``kwargs`` accept from_pretrained's ``dtype``, ``device_map``, ``attn_implementation`` and Hub
    options (``revision``, ``token``, ``cache_dir``, ``local_files_only``). ``vision_tower`` overrides
    where the CLIP tower is read from when the checkpoint does not contain it.
    """
    import torch

    kwargs.pop("config", None)
    kwargs.pop("trust_remote_code", None)
    kwargs.pop("_from_auto", None)
    kwargs.pop("_from_pipeline", None)
    output_loading_info = kwargs.pop("output_loading_info", False)
    hub = _hub_only(kwargs)
    load_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in _FROM_PRETRAINED_PASSTHROUGH}
    ckpt = inspect_original(name_or_path, vision_tower=vision_tower, **hub)
    expected = expected_shapes(ckpt.skinvl_config)
    check_shapes(ckpt, expected)

    # Load with the ORIGINAL vocabulary size; the <image> row is added afterwards.
    config = ckpt.skinvl_config
    load_config = SkinVLConfig.from_dict(config.to_dict())
    load_config.text_config.vocab_size = ckpt.original_vocab_rows
    with quiet_transformers():  # missing/unexpected keys are accounted for below, not printed
        model, info = SkinVLForConditionalGeneration.from_pretrained(
            str(ckpt.folder), config=load_config, key_mapping=original_key_mapping(ckpt.projector),
            output_loading_info=True, **load_kwargs,
        )
    missing = set(info.get("missing_keys", ()))
    allowed_missing: set[str] = set()
    if not ckpt.vision_in_checkpoint:
        allowed_missing |= {k for k in expected if k.startswith("model.vision_tower.")}
    if ckpt.projector == "linear":
        allowed_missing |= {"model.multi_modal_projector.linear_2.weight",
                            "model.multi_modal_projector.linear_2.bias"}
    unexplained = sorted(missing - allowed_missing)
    if unexplained:
        raise OriginalFormatError(
            f"{ckpt.folder}: these parameters are not in the checkpoint and would be left random: "
            f"{unexplained[:10]}{' ...' if len(unexplained) > 10 else ''}"
        )
    mismatched = info.get("mismatched_keys") or []
    if mismatched:
        raise OriginalFormatError(f"{ckpt.folder}: tensors with the wrong shape: {list(mismatched)[:10]}")

    with torch.no_grad():
        if ckpt.projector == "linear":
            linear_2 = model.model.multi_modal_projector.linear_2
            linear_2.weight.copy_(torch.eye(linear_2.weight.shape[0], dtype=linear_2.weight.dtype))
            linear_2.bias.zero_()
        if not ckpt.vision_in_checkpoint:
            _load_vision_tower(model, ckpt, hub)
    add_image_token_rows(model, config.image_token_id)
    model.config.image_token_id = config.image_token_id
    model.config.text_config.vocab_size = model.get_input_embeddings().weight.shape[0]
    # The renames above were only for reading this format: saving writes native names.
    model._weight_conversions = []
    _set_generation_tokens(model, ckpt)
    model.config._name_or_path = str(name_or_path)
    model.eval()
    if output_loading_info:
        return model, info
    return model


def _load_vision_tower(model, ckpt: OriginalCheckpoint, hub: dict[str, Any]) -> None:
    from transformers import CLIPVisionModel

    tower = model.model.vision_tower
    dtype = next(tower.parameters()).dtype
    try:
        with quiet_transformers():  # the CLIP text tower's keys are expected to be unused
            clip, info = CLIPVisionModel.from_pretrained(
                ckpt.vision_source, dtype=dtype, output_loading_info=True, **hub
            )
    except OSError as err:
        raise OriginalFormatError(
            f"The checkpoint {ckpt.folder} has no vision-tower weights and the CLIP weights at "
            f"{ckpt.vision_source!r} cannot be read ({err}); pass vision_tower=<local CLIP folder>."
        ) from err
    if info.get("missing_keys"):
        raise OriginalFormatError(
            f"{ckpt.vision_source}: the CLIP checkpoint lacks vision weights "
            f"{sorted(info['missing_keys'])[:10]}."
        )
    result = tower.load_state_dict(clip.state_dict(), strict=True)
    del clip, result


def add_image_token_rows(model, image_token_id: int) -> None:
    """Give the embedding and lm_head a row for ``<image>``: the mean of the existing rows.

    The embedding row is never used (image features replace it); the lm_head row makes the image
    token's logit the mean of all logits, so greedy decoding never picks it.
    """
    import torch

    embeddings = model.get_input_embeddings()
    rows = embeddings.weight.shape[0]
    if image_token_id < rows:
        return
    model.resize_token_embeddings(image_token_id + 1, mean_resizing=False)
    with torch.no_grad():
        new_in = model.get_input_embeddings().weight
        new_in[rows:] = new_in[:rows].float().mean(0, keepdim=True).to(new_in.dtype)
        head = model.get_output_embeddings()
        if head is not None and head.weight.shape[0] > rows and head.weight is not new_in:
            head.weight[rows:] = head.weight[:rows].float().mean(0, keepdim=True).to(head.weight.dtype)


def _set_generation_tokens(model, ckpt: OriginalCheckpoint) -> None:
    tokenizer = ckpt.tokenizer
    gen = model.generation_config
    gen.bos_token_id = ckpt.config.get("bos_token_id", tokenizer.bos_token_id)
    gen.eos_token_id = ckpt.config.get("eos_token_id", tokenizer.eos_token_id)
    gen.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else gen.eos_token_id
    gen.use_cache = True


def load_original_processor(name_or_path: str | os.PathLike, *, vision_tower: str | None = None,
                            image_aspect_ratio: str | None = None, template: str = "mistral_instruct",
                            **hub_kwargs: Any) -> SkinVLProcessor:
    """Build a ``SkinVLProcessor`` for an authors'-format checkpoint (tokenizer + CLIP settings)."""
    hub = _hub_only(hub_kwargs)
    folder = resolve_folder(name_or_path, **hub)
    config = read_original_config(folder)
    vision_source = resolve_vision_tower(folder, config, vision_tower)
    vision_config = load_vision_config(vision_source, **hub)
    tokenizer = load_original_tokenizer(folder)
    settings = read_image_processor_settings(vision_source, vision_config, **hub)
    aspect = image_aspect_ratio or ("pad" if config.get("image_aspect_ratio", "pad") == "pad" else "crop")
    return build_processor(tokenizer, vision_config, settings, image_aspect_ratio=aspect, template=template)


# --------------------------------------------------------------------------------------------
# Auto-class registration
# --------------------------------------------------------------------------------------------


class SkinVLFromOriginalForConditionalGeneration(SkinVLForConditionalGeneration):
    """Auto-class entry for ``llava_mistral`` folders: ``from_pretrained`` returns a SkinVL model."""

    config_class = LlavaMistralConfig

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """Translate and load an authors'-format checkpoint (see ``load_original_model``)."""
        if model_args:
            raise TypeError("Positional model arguments are not supported for llava_mistral checkpoints.")
        return load_original_model(pretrained_model_name_or_path, **kwargs)


class SkinVLFromOriginalProcessor(SkinVLProcessor):
    """Auto-class entry for ``llava_mistral`` folders: ``from_pretrained`` returns a SkinVLProcessor."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """Build the processor of an authors'-format checkpoint (see ``load_original_processor``)."""
        options = {k: kwargs[k] for k in ("vision_tower", "image_aspect_ratio", "template") if k in kwargs}
        return load_original_processor(pretrained_model_name_or_path, **options, **_hub_only(kwargs))


def register() -> None:
    """Register ``llava_mistral`` with AutoConfig, AutoModelForImageTextToText and AutoProcessor."""
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    AutoConfig.register("llava_mistral", LlavaMistralConfig, exist_ok=True)
    AutoModelForImageTextToText.register(
        LlavaMistralConfig, SkinVLFromOriginalForConditionalGeneration, exist_ok=True
    )
    AutoProcessor.register(LlavaMistralConfig, SkinVLFromOriginalProcessor, exist_ok=True)
