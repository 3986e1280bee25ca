"""The authors' checkpoint format (LLaVA ``llava_mistral``): reading it and translating it to SkinVL.

``inspect_original`` reads a folder (config, weight headers, tokenizer, vision tower) into an
``OriginalCheckpoint``; ``skinvl.original_loading`` loads one as a model in one call and
``skinvl.convert`` writes it out as a native checkpoint. Every file read here must lie inside its
checkpoint folder; anything malformed raises ``OriginalFormatError`` naming the file and the fix.

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

Translation, in short: the config becomes a ``SkinVLConfig`` (LLaVA's wrapper and training keys
dropped); keys are renamed while loading; the vision tower comes from ``mm_vision_tower`` as in
the original loader (which replaces any tower weights inside the checkpoint), or from the
checkpoint when ``mm_vision_tower`` has no weights on this machine (see ``choose_vision_tower``);
the tokenizer is converted to a fast one and given an ``<image>`` token, whose embedding and
lm_head rows are set to the mean of the existing rows (so its logit is never the largest: greedy
decoding never produces it). A linear projector becomes LLaVA's two-layer projector with an identity activation
and an identity second layer (exactly the same function). Every parameter of the resulting model is
either loaded from a file or one of those two constructed pieces; anything else is an error.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import PreTrainedConfig

from mm_skin.hub import is_hub_id
from mm_skin.paths import UnsafePathError, is_inside, resolve_inside

from .configuration_skinvl import SkinVLConfig
from .modeling_skinvl import SkinVLForConditionalGeneration
from .processing_skinvl import DEFAULT_TEMPLATE

logger = logging.getLogger(__name__)

#: Original ``model_type`` -> text model type of the translated config.
ORIGINAL_MODEL_TYPES = {"llava_mistral": "mistral"}
IMAGE_TOKEN = "<image>"

SAFE_INDEX = "model.safetensors.index.json"
SAFE_SINGLE = "model.safetensors"
BIN_INDEX = "pytorch_model.bin.index.json"
BIN_SINGLE = "pytorch_model.bin"

# Text-config fields that describe the saved wrapper, not the text model; they are set anew.
_WRAPPER_KEYS = {"architectures", "model_type", "transformers_version", "torch_dtype", "dtype", "use_cache"}
# Older spellings of text-config fields that transformers still translates (into rope_parameters).
_LEGACY_TEXT_KEYS = {"rope_theta", "rope_scaling"}
# Hub options a tokenizer records in its init kwargs; they describe this machine, not the model.
_HUB_OPTIONS = ("revision", "token", "cache_dir", "local_files_only")

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
# Locating and reading files
# --------------------------------------------------------------------------------------------


def read_json_object(path: Path) -> dict[str, Any]:
    """Read a JSON file that must hold an object; any fault is one ``OriginalFormatError`` naming it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise OriginalFormatError(f"{path}: cannot be read ({err}); check the file and its permissions.") from err
    except (json.JSONDecodeError, RecursionError) as err:
        raise OriginalFormatError(f"{path}: not valid JSON ({err}); repair the file or download it again.") from err
    if not isinstance(data, dict):
        raise OriginalFormatError(
            f"{path}: holds a JSON {type(data).__name__}, expected a JSON object ({{...}}); "
            "repair the file or download it again."
        )
    return data


def checked_file(folder: Path, name: str, listed_in: Path | None = None) -> Path:
    """``folder / name`` when it resolves (symlinks followed) to a regular file inside ``folder``."""
    where = f"{listed_in} names {name!r}" if listed_in else f"{folder}/{name}"
    try:
        if not isinstance(name, str):
            raise UnsafePathError(f"a JSON {type(name).__name__}, not a file name")
        real = resolve_inside(folder, name, what="file names", where="the checkpoint's folder")
    except UnsafePathError as reason:
        raise OriginalFormatError(
            f"{where}, which lies outside {folder} ({reason}): a checkpoint may only use files inside its "
            "own folder; fix the name (or copy the file into the folder)."
        ) from None
    path = folder / name
    if not real.is_file():
        state = "does not exist" if not path.exists() else "is not a regular file"
        raise OriginalFormatError(f"{where}, which {state}; restore the file or fix the name.")
    return path


def resolve_folder(name_or_path: str | os.PathLike, **hub_kwargs: Any) -> Path:
    """Return a local folder for a checkpoint path or Hub id (downloading only the needed files)."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    if path.exists():
        raise OriginalFormatError(f"{path} is a file; pass the checkpoint FOLDER (with config.json).")
    from huggingface_hub import snapshot_download

    allowed = _hub_only(hub_kwargs)
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
    data = read_json_object(config_file)
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
    """Where one checkpoint tensor lives and its shape/dtype (read from headers, not data).

    For safetensors files ``offset`` is the absolute byte offset of the tensor's data (None for
    ``.bin``), so that converting can read or copy it without mapping the file.
    """

    file: Path
    shape: tuple[int, ...]
    dtype: str
    offset: int | None = None


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
            weight_map = read_json_object(index).get("weight_map")
            if not isinstance(weight_map, dict) or not weight_map:
                raise OriginalFormatError(f"{index}: no 'weight_map' in the index.")
            return sorted({checked_file(folder, name, listed_in=index) for name in weight_map.values()})
        if (folder / single).exists():
            return [checked_file(folder, single)]
    raise OriginalFormatError(
        f"{folder}: no weights found (expected {SAFE_SINGLE}, {SAFE_INDEX}, {BIN_SINGLE} or {BIN_INDEX})."
    )


def open_bin(file: Path) -> dict[str, Any]:
    """Load a ``.bin`` state dict safely: ``weights_only=True`` (no arbitrary unpickling), mmap'ed."""
    import torch

    try:
        try:
            state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:
            # torch's legacy (pre-zip) format cannot be memory-mapped; still weights_only.
            state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - pickle, zip and torch errors all mean "not a state dict"
        reason = str(err).split(". ")[0].splitlines()[0] if str(err) else type(err).__name__
        raise OriginalFormatError(
            f"{file}: not a tensor state dict that torch.load(weights_only=True) can read ({reason}); "
            "re-save it with torch.save(state_dict) or as safetensors."
        ) from err
    if not isinstance(state, dict):
        raise OriginalFormatError(f"{file}: holds a {type(state).__name__}, not a state dict of tensors.")
    return state


def _scan_safetensors(file: Path) -> dict[str, WeightInfo]:
    """Tensors of one safetensors file, in data order; the library validates the file first."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(file), framework="pt") as handle:
            keys = list(handle.offset_keys())
    except SafetensorError as err:
        raise OriginalFormatError(
            f"{file}: not a readable safetensors file, it is truncated, empty or corrupt ({err}); "
            "download or copy it again."
        ) from err
    # safe_open has checked the header (size, JSON, dtypes, offsets within the file) but does not
    # expose the absolute data offsets (converting reads and copies by offset): that same header
    # is read here, once, for them and for each tensor's dtype and shape.
    with open(file, "rb") as handle:
        length = int.from_bytes(handle.read(8), "little")
        header = json.loads(handle.read(length))
    start = 8 + length
    return {key: WeightInfo(file, tuple(header[key]["shape"]), header[key]["dtype"],
                            start + header[key]["data_offsets"][0]) for key in keys}


def scan_weights(folder: Path) -> CheckpointWeights:
    """List every tensor of the checkpoint in ``folder`` with its file, shape, dtype (and offset)."""
    result = CheckpointWeights(folder=folder, files=_shard_files(folder))
    for file in result.files:
        if file.suffix == ".safetensors":
            result.tensors.update(_scan_safetensors(file))
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
    """Where the CLIP vision tower lives: ``override`` (``--vision-tower``: any folder or Hub id), else
    ``mm_vision_tower``, which, being checkpoint data, may only name a Hub id or a folder INSIDE the
    checkpoint (relative or absolute); one leaving it (``../clip``, ``/data/clip``, a symlink out)
    would load weights from elsewhere on this machine, so it needs an explicit ``override``."""
    if override is not None:
        return str(Path(override).expanduser()) if Path(override).expanduser().is_dir() else override
    value = config.get("mm_vision_tower", config.get("vision_tower"))
    if not value or not isinstance(value, str):
        raise OriginalFormatError(
            f"{folder}/config.json has no mm_vision_tower; pass vision_tower=<CLIP folder or Hub id> "
            "(--vision-tower)."
        )
    inside = _tower_inside(folder, value)
    if inside is not None:
        return str(inside)
    if is_hub_id(value):
        return value  # a Hub id such as openai/clip-vit-large-patch14-336
    raise OriginalFormatError(
        f"{folder}/config.json: mm_vision_tower {value!r} is neither a Hub id nor a folder inside the "
        "checkpoint; weights outside the checkpoint are loaded only when named explicitly: pass "
        "vision_tower=<CLIP folder or Hub id> (--vision-tower)."
    )


def _tower_inside(folder: Path, value: str) -> Path | None:
    """The folder ``value`` names inside the checkpoint ``folder`` (symlinks resolved), else None."""
    candidate = Path(value)
    if candidate.is_absolute():
        real = candidate.resolve()
        return real if real.is_dir() and is_inside(real, folder) else None
    try:
        real = resolve_inside(folder, value, what="mm_vision_tower", where="the checkpoint folder")
    except UnsafePathError:
        return None
    return real if real.is_dir() else None


def has_local_weights(source: str) -> bool:
    """True when the CLIP weights of ``source`` (a folder or a Hub id) are on this machine."""
    from huggingface_hub import try_to_load_from_cache

    names = (SAFE_SINGLE, SAFE_INDEX, BIN_SINGLE, BIN_INDEX)
    if Path(source).is_dir():
        return any((Path(source) / name).is_file() for name in names)
    return any(isinstance(try_to_load_from_cache(source, name), str) for name in names)


def choose_vision_tower(folder: Path, in_checkpoint: bool, source: str, override: str | None) -> bool:
    """Whether to use the checkpoint's own vision weights (True) or those of ``source`` (False).

    The original loader builds the tower from ``mm_vision_tower`` and so ignores any tower weights
    saved in the checkpoint; that is followed unless those weights are not on this machine.
    """
    if not in_checkpoint:
        logger.warning("%s: using the vision tower %r (%s).", folder, source,
                       "passed as vision_tower" if override is not None else "named by mm_vision_tower")
        return False
    if override is None and not has_local_weights(source):
        logger.warning(
            "%s: mm_vision_tower %r has no weights on this machine, so the vision tower saved in the "
            "checkpoint is used (the original code would load %r's; pass vision_tower= to choose).",
            folder, source, source,
        )
        return True
    logger.warning(
        "%s: using the vision tower %r (as the original code does); the checkpoint's own vision "
        "weights are ignored.", folder, source,
    )
    return False


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
    template: str = DEFAULT_TEMPLATE,
) -> SkinVLConfig:
    """Translate an original config.json (dict) into a ``SkinVLConfig``."""
    text = _text_config(config)
    text.update(vocab_size=vocab_size, use_cache=True)
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


def _text_config(config: dict[str, Any]) -> dict[str, Any]:
    """The text model's fields of an original config; LLaVA's wrapper and training keys are dropped."""
    from transformers import CONFIG_MAPPING

    text_type = ORIGINAL_MODEL_TYPES[config["model_type"]]
    fields = {f.name for f in dataclasses.fields(CONFIG_MAPPING[text_type])} | _LEGACY_TEXT_KEYS
    text = {k: v for k, v in config.items() if k in fields - _WRAPPER_KEYS}
    dropped = sorted(set(config) - set(text) - _WRAPPER_KEYS)
    logger.info("Not part of the %s text config (LLaVA wrapper/training keys), dropped: %s", text_type, dropped)
    return {**text, "model_type": text_type}


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
    for name in ("tokenizer_config.json", "special_tokens_map.json", "tokenizer.json"):
        if (folder / name).exists():
            read_json_object(checked_file(folder, name))
    tokenizer = AutoTokenizer.from_pretrained(str(folder), legacy=True)
    for option in _HUB_OPTIONS:  # e.g. HF_HUB_OFFLINE=1 would be saved as local_files_only: true
        tokenizer.init_kwargs.pop(option, None)
    pre = getattr(tokenizer, "_tokenizer", None)
    pre = getattr(pre, "pre_tokenizer", None)
    if pre is not None and getattr(pre, "prepend_scheme", "always") != "always":
        pre.prepend_scheme = "always"
        tokenizer._tokenizer.pre_tokenizer = pre
    tokenizer.init_kwargs["legacy"] = True
    if IMAGE_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_tokens([AddedToken(IMAGE_TOKEN, special=True, normalized=False)], special_tokens=True)
    return tokenizer


@dataclass
class OriginalCheckpoint:
    """Everything needed to load or convert one authors'-format checkpoint."""

    folder: Path
    config: dict[str, Any]
    weights: CheckpointWeights
    projector: str
    vision_from_checkpoint: bool  # False: the tower is read from ``vision_source``
    vision_source: str
    vision_config: Any
    tokenizer: Any
    skinvl_config: SkinVLConfig
    original_vocab_rows: int


def inspect_original(
    name_or_path: str | os.PathLike,
    *,
    vision_tower: str | None = None,
    template: str = DEFAULT_TEMPLATE,
    **hub_kwargs: Any,
) -> OriginalCheckpoint:
    """Read config, weight headers, vision tower config and tokenizer; translate the config."""
    folder = resolve_folder(name_or_path, **hub_kwargs)
    config = read_original_config(folder)
    weights = scan_weights(folder)
    projector = detect_projector(weights, config)
    vision_source = resolve_vision_tower(folder, config, vision_tower)
    vision_config = load_vision_config(vision_source, **_hub_only(hub_kwargs))
    from_checkpoint = choose_vision_tower(folder, has_vision_weights(weights), vision_source, vision_tower)
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
        vision_from_checkpoint=from_checkpoint, vision_source=vision_source,
        vision_config=vision_config, tokenizer=tokenizer, skinvl_config=skinvl_config,
        original_vocab_rows=rows,
    )


def _hub_only(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if k in _HUB_OPTIONS}


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


