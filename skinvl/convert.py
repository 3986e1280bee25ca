"""``skinvl convert``: any checkpoint skinvl loads -> a native SkinVL or a stock transformers LLaVA one.

SRC is anything the inference core loads (``skinvl.inference.loading``): a preset
(``skinvl-tiny``), the authors' ``llava_mistral`` format, a native SkinVL or a transformers LLaVA
checkpoint, local or on the Hub. Other families (Gemma 3, Idefics3, ...) load as they are and are
refused with that advice.

The authors' format is translated by streaming (below). A loaded model (preset, SkinVL, LLaVA) is
saved with ``save_pretrained``; for ``--format llava`` its config and processor are rewritten as
stock LLaVA ones (SkinVL's weights ARE LLaVA's: same modules, same names).

Conversion of the authors' format streams tensor by tensor: it reads one tensor from the source (safetensors, or ``.bin``
loaded with ``weights_only=True`` and memory-mapped), renames/casts it and writes it straight into
the output safetensors file, whose header is computed up front from the source headers. Memory
therefore stays near the largest source shard, whatever the model size. No model is instantiated
(only its parameter list, on the meta device, to check that every parameter is covered).

Everything is written into a fresh hidden folder beside DST, which replaces DST only once complete:
an interrupted conversion leaves DST as it was, and DST never mixes old and new weight files.

Formats:
* ``skinvl``: ``model_type`` "skinvl" with ``auto_map`` and the module files, so it loads with
  ``import skinvl`` or with ``trust_remote_code=True``.
* ``llava``: ``model_type`` "llava" (``LlavaForConditionalGeneration`` + ``LlavaProcessor``), which
  plain transformers and LLaVA-aware serving engines load without custom code.

Example::

    skinvl convert zwq803/SkinVL-PubMM skinvl-pubmm --dtype bfloat16
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mm_skin.cli import ExitCode, add_command, print_problem
from mm_skin.paths import is_inside

from .modeling_skinvl import (
    MODULE_FILES,
    parse_dtype,
    set_generation_tokens,
    write_remote_code_files,
)
from .original_format import (
    LlavaMistralConfig,
    OriginalCheckpoint,
    OriginalFormatError,
    WeightInfo,
    check_shapes,
    expected_shapes,
    inspect_original,
    map_key,
    open_bin,
    original_key_mapping,
    resolve_folder,
    scan_weights,
)
from .original_loading import build_processor, read_image_processor_settings
from .original_translation import (
    RESIZED,
    identity_projector,
    vision_tower_key,
    with_image_token_rows,
)
from .processing_skinvl import (
    DEFAULT_TEMPLATE,
    IMAGE_ASPECT_RATIOS,
    PROMPT_TEMPLATES,
    SkinVLProcessor,
)

FORMATS = ("skinvl", "llava")
DEFAULT_MAX_SHARD_BYTES = 5 * 1024**3

# torch dtype <-> the dtype code in a safetensors header.
_SAFETENSORS_CODES = {
    torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
    torch.bool: "BOOL",
}
_CODE_DTYPES = {code: dtype for dtype, code in _SAFETENSORS_CODES.items()}


def _nbytes(shape: tuple[int, ...], dtype: torch.dtype) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count * dtype.itemsize


@dataclass
class _Entry:
    """One output tensor: its name, shape, dtype and how to produce it (called once, when written)."""

    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    produce: Callable[[_SourceReader], torch.Tensor]
    # The source tensor when its bytes ARE the output bytes (same dtype and shape, safetensors
    # source): then they are copied in the kernel, never through Python.
    raw: WeightInfo | None = None

    @property
    def nbytes(self) -> int:
        return _nbytes(self.shape, self.dtype)


def _source_dtype(info: WeightInfo) -> torch.dtype:
    """The torch dtype of a scanned tensor (a safetensors code, or "torch.x" for ``.bin``)."""
    return _CODE_DTYPES.get(info.dtype) or parse_dtype(info.dtype)


class _SourceReader:
    """Reads single source tensors, keeping exactly one source file open (entries are ordered by file).

    Safetensors are read with plain reads at the offsets found while scanning, not mapped: a map
    would leave every page read so far resident (RSS grows to the whole shard).
    """

    def __init__(self) -> None:
        self._file: Path | None = None
        self._handle: Any = None

    def tensor(self, key: str, info: WeightInfo) -> torch.Tensor:
        if info.file != self._file:
            self.close()
            self._handle = open(info.file, "rb") if info.offset is not None else open_bin(info.file)  # noqa: SIM115
            self._file = info.file
        if info.offset is None:
            return self._handle[key]
        dtype = _source_dtype(info)
        buffer = bytearray(_nbytes(info.shape, dtype))
        if not buffer:
            return torch.empty(info.shape, dtype=dtype)
        self._handle.seek(info.offset)
        if self._handle.readinto(buffer) != len(buffer):
            raise OriginalFormatError(f"{info.file}: the file ends inside tensor {key!r} (truncated?).")
        return torch.frombuffer(buffer, dtype=dtype).reshape(info.shape)

    def close(self) -> None:
        if self._handle is not None and not isinstance(self._handle, dict):
            self._handle.close()
        self._file, self._handle = None, None


def _output_dtype(ckpt: OriginalCheckpoint, dtype: torch.dtype | None) -> torch.dtype:
    """``dtype`` if given, else the config's, else the first source tensor's."""
    config_dtype = parse_dtype(ckpt.skinvl_config.dtype)
    if dtype is not None or config_dtype is not None:
        return dtype or config_dtype
    first = next(iter(ckpt.weights.tensors.values()), None)
    return _source_dtype(first) if first is not None else torch.float32


def _in_data_order(tensors: dict[str, WeightInfo]) -> list[str]:
    # Within a file, follow the data layout so that reads are sequential.
    return sorted(tensors, key=lambda k: (str(tensors[k].file), tensors[k].offset or 0, k))


def _cast_entry(name: str, key: str, info: WeightInfo, shape: tuple[int, ...], dtype: torch.dtype) -> _Entry:
    """An output tensor that is a source tensor cast to ``dtype`` (copied raw when nothing changes)."""
    raw = info if info.offset is not None and _source_dtype(info) == dtype else None
    return _Entry(name, shape, dtype, lambda reader: reader.tensor(key, info).to(dtype).contiguous(), raw)


def _grown_entry(name: str, key: str, info: WeightInfo, shape: tuple[int, ...], dtype: torch.dtype) -> _Entry:
    """Embedding / lm_head with the <image> row(s) added (``with_image_token_rows``)."""
    return _Entry(name, shape, dtype, lambda reader: with_image_token_rows(reader.tensor(key, info).to(dtype), shape[0]))


def _checkpoint_entries(ckpt: OriginalCheckpoint, expected: dict, dtype: torch.dtype) -> list[_Entry]:
    mapping = original_key_mapping(ckpt.projector)
    entries = []
    for key in _in_data_order(ckpt.weights.tensors):
        info, target = ckpt.weights.tensors[key], map_key(key, mapping)
        if target is None or (target.startswith("model.vision_tower.") and not ckpt.vision_from_checkpoint):
            continue  # a recomputed buffer, or tower weights replaced by mm_vision_tower's
        shape = tuple(expected[target])
        grow = target in RESIZED and shape[0] > ckpt.original_vocab_rows
        entries.append((_grown_entry if grow else _cast_entry)(target, key, info, shape, dtype))
    return entries


def _vision_tower_entries(ckpt: OriginalCheckpoint, expected: dict, dtype: torch.dtype) -> list[_Entry]:
    """The vision tower read from the CLIP checkpoint ``ckpt.vision_source`` (named by ``vision_tower_key``)."""
    clip = scan_weights(resolve_folder(ckpt.vision_source))
    entries = []
    for key in _in_data_order(clip.tensors):
        target = vision_tower_key(key)
        if target is None:
            continue  # text tower, projections, logit_scale, a recomputed buffer
        info = clip.tensors[key]
        if target not in expected:
            raise OriginalFormatError(f"{info.file}: CLIP tensor {key!r} has no place in the vision tower.")
        if tuple(info.shape) != tuple(expected[target]):
            raise OriginalFormatError(
                f"{info.file}: CLIP tensor {key!r} has shape {list(info.shape)}, expected "
                f"{list(expected[target])}."
            )
        entries.append(_cast_entry(target, key, info, tuple(info.shape), dtype))
    return entries


def plan_conversion(ckpt: OriginalCheckpoint, *, dtype: torch.dtype | None = None) -> list[_Entry]:
    """Return the output tensors (ordered by source file) for an inspected original checkpoint.

    Raises ``OriginalFormatError`` when any parameter of the target model would have no source.
    """
    expected = expected_shapes(ckpt.skinvl_config)
    check_shapes(ckpt, expected)
    out_dtype = _output_dtype(ckpt, dtype)
    entries = _checkpoint_entries(ckpt, expected, out_dtype)
    if not ckpt.vision_from_checkpoint:
        entries += _vision_tower_entries(ckpt, expected, out_dtype)
    if ckpt.projector == "linear":  # LLaVA's two layers with an identity second layer
        identity = identity_projector(ckpt.skinvl_config.text_config.hidden_size, out_dtype)
        for name, tensor in identity.items():
            entries.append(_Entry(name, tuple(tensor.shape), out_dtype, lambda reader, t=tensor: t))

    names = [e.name for e in entries]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise OriginalFormatError(f"{ckpt.folder}: several source tensors map to {duplicates[:5]}.")
    missing = sorted(set(expected) - set(names))
    if missing:
        raise OriginalFormatError(
            f"{ckpt.folder}: no source tensor for {missing[:10]}{' ...' if len(missing) > 10 else ''}; "
            "converting would leave them random."
        )
    return entries


def _shard(entries: list[_Entry], max_bytes: int) -> list[list[_Entry]]:
    shards: list[list[_Entry]] = [[]]
    size = 0
    for entry in entries:
        if shards[-1] and size + entry.nbytes > max_bytes:
            shards.append([])
            size = 0
        shards[-1].append(entry)
        size += entry.nbytes
    return shards


def write_safetensors_streaming(path: Path, entries: list[_Entry], reader: _SourceReader) -> int:
    """Write ``entries`` to a safetensors file one tensor at a time; return the bytes of data."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for entry in entries:
        header[entry.name] = {"dtype": _SAFETENSORS_CODES[entry.dtype], "shape": list(entry.shape),
                              "data_offsets": [offset, offset + entry.nbytes]}
        offset += entry.nbytes
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)  # the format aligns the data to 8 bytes
    with open(path, "wb", buffering=0) as handle:
        handle.write(struct.pack("<Q", len(encoded)))
        handle.write(encoded)
        for entry in entries:
            if entry.raw is not None:
                _copy_range(entry.raw.file, entry.raw.offset, entry.nbytes, handle)
                continue
            tensor = entry.produce(reader)
            if tuple(tensor.shape) != entry.shape or tensor.dtype != entry.dtype:
                raise RuntimeError(
                    f"internal error: {entry.name} produced {tuple(tensor.shape)} {tensor.dtype}, "
                    f"planned {entry.shape} {entry.dtype}"
                )
            # A uint8 view is written without copying (bfloat16 has no numpy dtype).
            handle.write(tensor.contiguous().view(-1).view(torch.uint8).numpy().data)
            del tensor
    return offset


def _copy_range(source: Path, offset: int, count: int, target) -> None:
    """Append ``count`` bytes of ``source`` from ``offset`` to the open file ``target`` in the kernel."""
    with open(source, "rb", buffering=0) as handle:
        while count > 0:
            sent = os.sendfile(target.fileno(), handle.fileno(), offset, count)
            if sent == 0:
                raise OriginalFormatError(f"{source}: file ended before byte {offset + count} (truncated?)")
            offset += sent
            count -= sent


def _write_weights(folder: Path, entries: list[_Entry], max_shard_size: int) -> None:
    """Write the weights into ``folder``: one file, or shards plus the index naming each of them."""
    shards = _shard(entries, max_shard_size)
    reader = _SourceReader()
    total = 0
    weight_map: dict[str, str] = {}
    try:
        from tqdm.auto import tqdm

        for number, shard in enumerate(tqdm(shards, desc="Writing shards", unit="shard",
                                            disable=len(shards) < 2), start=1):
            name = "model.safetensors" if len(shards) == 1 else \
                f"model-{number:05d}-of-{len(shards):05d}.safetensors"
            total += write_safetensors_streaming(folder / name, shard, reader)
            weight_map.update({entry.name: name for entry in shard})
    finally:
        reader.close()
    if len(shards) > 1:
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")


def _write_config_and_processor(folder: Path, ckpt: OriginalCheckpoint, format: str, template: str,
                                image_aspect_ratio: str) -> None:
    from transformers import GenerationConfig, LlavaConfig, LlavaProcessor

    config = ckpt.skinvl_config
    config.image_aspect_ratio = image_aspect_ratio
    settings = read_image_processor_settings(ckpt.vision_source, ckpt.vision_config)
    processor = build_processor(ckpt.tokenizer, ckpt.vision_config, settings, image_aspect_ratio=image_aspect_ratio,
                                template=template,
                                processor_class=SkinVLProcessor if format == "skinvl" else LlavaProcessor)
    if format == "skinvl":
        config.architectures = ["SkinVLForConditionalGeneration"]
        config.save_pretrained(folder)
        write_remote_code_files(folder)
    else:
        data = config.to_dict()
        for key in ("prompt_template", "image_aspect_ratio", "model_type", "auto_map", "transformers_version"):
            data.pop(key, None)
        llava = LlavaConfig(**data)
        llava.architectures = ["LlavaForConditionalGeneration"]
        llava.save_pretrained(folder)
    processor.save_pretrained(folder)
    set_generation_tokens(GenerationConfig(), ckpt.tokenizer, ckpt.config).save_pretrained(folder)


def _check_destination(dst: Path, overwrite: bool) -> None:
    """DST is a new folder, an empty one, or (with ``overwrite``) a non-empty one; never a link or file."""
    if dst.is_symlink():
        raise ValueError(f"DST {dst} is a symbolic link; pass the folder it should create, not a link.")
    if dst.exists() and not dst.is_dir():
        raise FileExistsError(f"DST {dst} is a file; choose a folder path.")
    if dst.exists() and any(dst.iterdir()) and not overwrite:
        raise FileExistsError(f"{dst} exists and is not empty; choose a new folder or pass --overwrite.")


def _refuse_overlap(dst: Path, sources: list[Path]) -> None:
    """DST must not be, contain or lie inside what is read (the source, a local CLIP folder)."""
    for source in sources:
        if is_inside(dst, source) or is_inside(source, dst):
            raise ValueError(
                f"DST {dst} is, contains or lies inside the source folder {source.resolve()}: converting would "
                "overwrite what it reads; choose a DST outside it."
            )


def _replace_folder(new: Path, dst: Path, overwrite: bool) -> None:
    """Move the finished folder ``new`` to ``dst``; the old ``dst`` (if any) goes only after that."""
    old = None
    if dst.exists() and any(dst.iterdir()):
        if not overwrite:  # checked again: a folder may have appeared while converting
            raise FileExistsError(f"{dst} was filled while converting; choose a new folder or pass --overwrite.")
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        os.rename(dst, old)
    try:
        os.rename(new, dst)  # an empty dst is replaced; a non-empty one (a concurrent run) fails
    except OSError:
        if old is not None:
            os.rename(old, dst)
        raise
    if old is not None:
        shutil.rmtree(old)


def _source_model_type(src: str | os.PathLike) -> str:
    """The model_type of ``src``: "skinvl" for presets, "llava_mistral" for the authors' format, ..."""
    from skinvl.auto_registration import register
    from skinvl.inference.loading import checkpoint_model_type
    from skinvl.presets import PRESET_NAMES

    if str(src) in PRESET_NAMES:
        return "skinvl"
    register()  # a Hub id's config may be llava_mistral
    return checkpoint_model_type(str(src), ask_hub=True)


def _convert_loaded(src: str, work: Path, model_type: str, *, format: str, dtype: str | None, template: str,
                    image_aspect_ratio: str | None, vision_tower: str | None) -> None:
    """Write ``src`` (a preset, SkinVL or LLaVA model the core loads) into ``work`` in ``format``."""
    from transformers import LlavaConfig, LlavaProcessor

    from skinvl.inference.loading import load

    if model_type not in FORMATS:
        raise ValueError(f"{src} is a {model_type!r} checkpoint: convert writes SkinVL or LLaVA ones, and a "
                         f"{model_type} model needs no conversion (pass it to skinvl generate / eval as it is).")
    if format == "skinvl" and model_type != "skinvl":
        raise ValueError(f"{src} is a stock LLaVA checkpoint: --format skinvl needs a SkinVL source (use "
                         "--format llava, or load it as it is).")
    model, processor = load(src, dtype=dtype, vision_tower=vision_tower)
    if model_type == "skinvl":
        processor.set_default_template(template)
        model.config.prompt_template = template
        if image_aspect_ratio is not None:
            processor.set_image_aspect_ratio(image_aspect_ratio)
            model.config.image_aspect_ratio = image_aspect_ratio
    model.save_pretrained(work)  # SkinVL writes its module files and auto_map too
    if format == "skinvl" or model_type == "llava":
        processor.save_pretrained(work)
        return
    for name in MODULE_FILES:
        (work / name).unlink(missing_ok=True)
    data = model.config.to_dict()
    for key in ("prompt_template", "image_aspect_ratio", "model_type", "auto_map", "transformers_version",
                "architectures"):
        data.pop(key, None)
    llava = LlavaConfig(**data)
    llava.architectures = ["LlavaForConditionalGeneration"]
    llava.save_pretrained(work)
    processor.tokenizer.chat_template = processor.chat_template
    LlavaProcessor(image_processor=processor.image_processor, tokenizer=processor.tokenizer,
                   patch_size=processor.patch_size,
                   vision_feature_select_strategy=processor.vision_feature_select_strategy,
                   chat_template=processor.chat_template,
                   num_additional_image_tokens=processor.num_additional_image_tokens).save_pretrained(work)


def convert(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    format: str = "skinvl",
    dtype: str | None = None,
    vision_tower: str | None = None,
    template: str = DEFAULT_TEMPLATE,
    image_aspect_ratio: str | None = None,
    max_shard_size: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Convert ``src`` (anything the inference core loads, see the module docstring) into ``dst``.

    ``format`` is "skinvl" (native, loads with ``import skinvl`` or ``trust_remote_code=True``) or
    "llava" (stock transformers ``llava``). ``dtype`` casts the weights ("bfloat16", ...).
    ``vision_tower`` (CLIP folder or Hub id) replaces the checkpoint's ``mm_vision_tower``.
    ``max_shard_size`` (bytes; authors' format) defaults to the largest source shard; a loaded
    model is sharded by ``save_pretrained``. ``overwrite`` lets a finished
    conversion replace a non-empty ``dst`` (never the source). Returns ``dst``.
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}.")
    dst = Path(dst)
    _check_destination(dst, overwrite)  # before reading anything
    model_type = _source_model_type(src)
    if model_type != LlavaMistralConfig.model_type:
        _refuse_overlap(dst, [Path(src)] if Path(src).is_dir() else [])
        return _in_fresh_folder(dst, overwrite, lambda work: _convert_loaded(
            str(src), work, model_type, format=format, dtype=dtype, template=template,
            image_aspect_ratio=image_aspect_ratio, vision_tower=vision_tower))
    ckpt = inspect_original(src, vision_tower=vision_tower, template=template)
    tower = Path(ckpt.vision_source)
    _refuse_overlap(dst, [ckpt.folder] + ([tower] if tower.is_dir() else []))
    entries = plan_conversion(ckpt, dtype=parse_dtype(dtype))
    ckpt.skinvl_config.dtype = entries[0].dtype
    if max_shard_size is None:
        max_shard_size = max((f.stat().st_size for f in ckpt.weights.files), default=DEFAULT_MAX_SHARD_BYTES)

    def write(work: Path) -> None:
        _write_weights(work, entries, max(max_shard_size, 1))
        _write_config_and_processor(work, ckpt, format, template,
                                    image_aspect_ratio or ckpt.skinvl_config.image_aspect_ratio)

    return _in_fresh_folder(dst, overwrite, write)


def _in_fresh_folder(dst: Path, overwrite: bool, write: Callable[[Path], None]) -> Path:
    """``write`` into a hidden folder beside ``dst``, which replaces ``dst`` only once complete."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dst.name}.tmp-", dir=dst.parent))
    try:
        work.chmod(0o755)  # mkdtemp's 0700 would become DST's permissions
        write(work)
        _replace_folder(work, dst, overwrite)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dst


@dataclass(kw_only=True)
class ConvertOptions:
    """Options of ``skinvl convert`` (the CLI is derived from these fields)."""

    src: str = field(metadata={"positional": True,
                               "help": "preset (skinvl-tiny), folder or Hub id: the authors' llava_mistral "
                               "format, SkinVL or LLaVA"})
    dst: str = field(metadata={"positional": True, "help": "output folder (new or empty, unless --overwrite)"})
    format: str = field(default="skinvl", metadata={
        "choices": list(FORMATS), "help": "skinvl: native (auto_map, loads with trust_remote_code); llava: "
        "stock transformers LlavaForConditionalGeneration (no custom code)"})
    dtype: str | None = field(default=None, metadata={
        "help": "cast weights: float32, bfloat16 or float16 (default: the checkpoint's)"})
    vision_tower: str | None = field(default=None, metadata={
        "help": "CLIP folder or Hub id replacing the checkpoint's mm_vision_tower (e.g. when that path "
        "does not exist here)"})
    template: str = field(default=DEFAULT_TEMPLATE, metadata={
        "choices": list(PROMPT_TEMPLATES), "help": "default prompt template of the output"})
    image_aspect_ratio: str | None = field(default=None, metadata={
        "choices": list(IMAGE_ASPECT_RATIOS),
        "help": "default image preparation of the output (default: from the config, 'pad')"})
    max_shard_size: int | None = field(default=None, metadata={
        "help": "bytes per output shard (default: the largest source shard)"})
    overwrite: bool = field(default=False, metadata={
        "help": "replace a non-empty DST once the conversion is complete (never the source)"})


def run_convert(options: ConvertOptions) -> int:
    """Run ``skinvl convert``; bad input is one line on stderr and exit code BAD_INPUT."""
    import time

    start = time.perf_counter()
    try:
        dst = convert(options.src, options.dst, format=options.format, dtype=options.dtype,
                      vision_tower=options.vision_tower, template=options.template,
                      image_aspect_ratio=options.image_aspect_ratio, max_shard_size=options.max_shard_size,
                      overwrite=options.overwrite)
    except (OriginalFormatError, FileExistsError, ValueError, OSError, KeyError) as err:
        print_problem(str(err).replace("\n", " "))
        return ExitCode.BAD_INPUT
    print(f"wrote {options.format} checkpoint to {dst} in {time.perf_counter() - start:.1f} s")
    return ExitCode.OK


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add ``skinvl convert``."""
    add_command(
        subparsers, "convert", ConvertOptions, run_convert,
        help="convert the authors' LLaVA-format SkinVL checkpoint (or any model skinvl loads) "
        "to a native SkinVL or stock LLaVA one",
        description="Convert SRC into DST: a checkpoint in the authors' original LLaVA format (model_type "
        "llava_mistral; a local folder or a Hub id such as zwq803/SkinVL-PubMM; streamed tensor by tensor, "
        "memory ~ the largest source shard), or any SkinVL / LLaVA model skinvl loads, presets included "
        "(skinvl convert skinvl-tiny OUT --format llava). DST is written in a fresh folder that replaces "
        "it only when complete.",
    )


__all__ = ["convert", "plan_conversion", "write_safetensors_streaming", "register_cli", "run_convert",
           "ConvertOptions", "FORMATS"]
