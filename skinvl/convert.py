"""``skinvl convert``: the authors' checkpoints -> a native SkinVL or a stock transformers LLaVA one.

Conversion streams tensor by tensor: it reads one tensor from the source (safetensors, or ``.bin``
loaded with ``weights_only=True`` and memory-mapped), renames/casts it and writes it straight into
the output safetensors file, whose header is computed up front from the source headers. Memory
therefore stays near the largest source shard, whatever the model size. No model is instantiated
(only its parameter list, on the meta device, to check that every parameter is covered).

Formats:
* ``skinvl``: ``model_type`` "skinvl" with ``auto_map`` and the module files, so it loads with
  ``import skinvl`` or with ``trust_remote_code=True``.
* ``llava``: ``model_type`` "llava" (``LlavaForConditionalGeneration`` + ``LlavaProcessor``), which
  plain transformers and LLaVA-aware serving engines load without custom code.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMATS = ("skinvl", "llava")
DEFAULT_MAX_SHARD_BYTES = 5 * 1024**3

_SAFETENSORS_DTYPES = {
    "float32": "F32", "float16": "F16", "bfloat16": "BF16", "float64": "F64",
    "int64": "I64", "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL",
}


@dataclass
class _Entry:
    """One output tensor: its name, shape, dtype and how to produce it (called once, when written)."""

    name: str
    shape: tuple[int, ...]
    dtype: Any  # torch.dtype
    source_file: Path | None
    produce: Callable[[Any], Any]  # (open source handle or None) -> tensor
    # (file, absolute byte offset) when the output bytes are the source bytes unchanged (same
    # dtype and shape, safetensors source): copied in the kernel, never through Python.
    raw: tuple[Path, int] | None = None

    @property
    def nbytes(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count * self.dtype.itemsize


def _safetensors_layout(path: Path) -> tuple[int, dict[str, Any]]:
    """(byte offset of the data section, header) of a safetensors file."""
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        return 8 + length, json.loads(handle.read(length))


class _SafetensorsFile:
    """Reads single tensors from a safetensors file with plain reads (no mmap).

    A memory map would leave every page read so far resident in this process (RSS grows to the
    whole shard); reading each tensor into its own buffer keeps RSS at one tensor.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._base, self._header = _safetensors_layout(path)
        self._file = open(path, "rb")  # noqa: SIM115 - closed by close()

    def get_tensor(self, key: str):
        import torch

        from .convert_original import OriginalFormatError

        info = self._header.get(key)
        if info is None:
            raise OriginalFormatError(f"{self.path}: tensor {key!r} is listed but missing from the file.")
        dtype = {v: getattr(torch, k) for k, v in _SAFETENSORS_DTYPES.items()}[info["dtype"]]
        start, end = info["data_offsets"]
        if end == start:
            return torch.empty(info["shape"], dtype=dtype)
        buffer = bytearray(end - start)
        self._file.seek(self._base + start)
        if self._file.readinto(buffer) != len(buffer):
            raise OriginalFormatError(f"{self.path}: truncated file while reading {key!r}.")
        return torch.frombuffer(buffer, dtype=dtype).reshape(info["shape"])

    def close(self) -> None:
        self._file.close()


class _SourceReader:
    """Keeps exactly one source file open at a time (entries are ordered by file)."""

    def __init__(self) -> None:
        self._file: Path | None = None
        self._handle: Any = None

    def get(self, file: Path):
        from .convert_original import open_bin

        if file != self._file:
            self.close()
            self._handle = _SafetensorsFile(file) if file.suffix == ".safetensors" else open_bin(file)
            self._file = file
        return self._handle

    def tensor(self, file: Path, key: str):
        handle = self.get(file)
        if isinstance(handle, dict):
            return handle[key]
        return handle.get_tensor(key)

    def close(self) -> None:
        if isinstance(self._handle, _SafetensorsFile):
            self._handle.close()
        self._file, self._handle = None, None


def _torch_dtype(name: str | None, default):
    import torch

    if name is None or name == "auto":
        return default
    value = getattr(torch, str(name).replace("torch.", ""), None)
    if not isinstance(value, torch.dtype) or not value.is_floating_point:
        raise ValueError(f"--dtype {name!r} is not a floating-point torch dtype (float32, bfloat16, float16).")
    return value


def _safetensors_dtype_to_torch(code: str):
    import torch

    table = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}
    return table.get(code, torch.float32)


def plan_conversion(ckpt, *, dtype=None) -> list[_Entry]:
    """Return the output tensors (ordered by source file) for an inspected original checkpoint.

    Raises ``OriginalFormatError`` when any parameter of the target model would have no source.
    """
    import torch

    from .convert_original import (
        OriginalFormatError,
        check_shapes,
        expected_shapes,
        map_key,
        original_key_mapping,
        resolve_folder,
        scan_weights,
    )

    config = ckpt.skinvl_config
    expected = expected_shapes(config)
    check_shapes(ckpt, expected)
    mapping = original_key_mapping(ckpt.projector)
    rows, vocab = ckpt.original_vocab_rows, config.text_config.vocab_size
    source_dtype = _safetensors_dtype_to_torch(
        next(iter(ckpt.weights.tensors.values())).dtype
    ) if ckpt.weights.tensors else torch.float32
    config_dtype = config.dtype if isinstance(config.dtype, torch.dtype) else None
    out_dtype = dtype or config_dtype or source_dtype

    entries: list[_Entry] = []

    def cast(tensor):
        return tensor.to(out_dtype).contiguous()

    def add_rows(tensor):
        # New rows (the <image> token) = mean of the existing ones; see add_image_token_rows.
        tensor = tensor.to(out_dtype)
        extra = tensor.float().mean(0, keepdim=True).to(out_dtype).expand(vocab - rows, -1)
        return torch.cat([tensor, extra], 0).contiguous()

    layouts: dict[Path, tuple[int, dict[str, Any]]] = {}

    def raw_range(file: Path, key: str, transformed: bool) -> tuple[Path, int] | None:
        if transformed or file.suffix != ".safetensors":
            return None
        if file not in layouts:
            layouts[file] = _safetensors_layout(file)
        base, header = layouts[file]
        info = header[key]
        if _SAFETENSORS_DTYPES.get(str(out_dtype).replace("torch.", "")) != info["dtype"]:
            return None
        return file, base + info["data_offsets"][0]

    def source_order(key: str, weights) -> tuple[str, int, str]:
        # Within a file, follow the data layout so that reads are sequential.
        info = weights.tensors[key]
        offset = 0
        if info.file.suffix == ".safetensors":
            if info.file not in layouts:
                layouts[info.file] = _safetensors_layout(info.file)
            offset = layouts[info.file][1][key]["data_offsets"][0]
        return str(info.file), offset, key

    for key in sorted(ckpt.weights.tensors, key=lambda k: source_order(k, ckpt.weights)):
        info = ckpt.weights.tensors[key]
        target = map_key(key, mapping)
        if target is None:
            continue
        grow = target in ("model.language_model.embed_tokens.weight", "lm_head.weight") and vocab > rows
        entries.append(_Entry(
            name=target,
            shape=tuple(expected[target]),
            dtype=out_dtype,
            source_file=info.file,
            produce=(lambda reader, f=info.file, k=key, g=grow: (add_rows if g else cast)(reader.tensor(f, k))),
            raw=raw_range(info.file, key, grow),
        ))

    if not ckpt.vision_in_checkpoint:
        clip_folder = resolve_folder(ckpt.vision_source)
        clip = scan_weights(clip_folder)
        prefix = "vision_model."
        for key in sorted(clip.tensors, key=lambda k: source_order(k, clip)):
            if not key.startswith(prefix) or key.endswith("embeddings.position_ids"):
                continue  # text tower, projections, logit_scale: not part of the vision tower
            target = "model.vision_tower." + key[len(prefix):]
            info = clip.tensors[key]
            if target not in expected:
                raise OriginalFormatError(f"{info.file}: CLIP tensor {key!r} has no place in the vision tower.")
            if tuple(info.shape) != tuple(expected[target]):
                raise OriginalFormatError(
                    f"{info.file}: CLIP tensor {key!r} has shape {list(info.shape)}, expected "
                    f"{list(expected[target])}."
                )
            entries.append(_Entry(target, tuple(info.shape), out_dtype, info.file,
                                  lambda reader, f=info.file, k=key: cast(reader.tensor(f, k)),
                                  raw=raw_range(info.file, key, False)))

    if ckpt.projector == "linear":
        size = config.text_config.hidden_size
        entries.append(_Entry("model.multi_modal_projector.linear_2.weight", (size, size), out_dtype, None,
                              lambda reader: torch.eye(size, dtype=out_dtype)))
        entries.append(_Entry("model.multi_modal_projector.linear_2.bias", (size,), out_dtype, None,
                              lambda reader: torch.zeros(size, dtype=out_dtype)))

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
    import torch

    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for entry in entries:
        code = _SAFETENSORS_DTYPES[str(entry.dtype).replace("torch.", "")]
        header[entry.name] = {"dtype": code, "shape": list(entry.shape),
                              "data_offsets": [offset, offset + entry.nbytes]}
        offset += entry.nbytes
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)  # the format aligns the data to 8 bytes
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "wb", buffering=0) as handle:
        handle.write(struct.pack("<Q", len(encoded)))
        handle.write(encoded)
        for entry in entries:
            if entry.raw is not None:
                _copy_range(entry.raw[0], entry.raw[1], entry.nbytes, handle)
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
    os.replace(tmp, path)
    return offset


def _copy_range(source: Path, offset: int, count: int, target) -> None:
    """Append ``count`` bytes of ``source`` from ``offset`` to the open file ``target`` in the kernel."""
    with open(source, "rb", buffering=0) as handle:
        while count > 0:
            sent = os.sendfile(target.fileno(), handle.fileno(), offset, count)
            if sent == 0:
                raise OSError(f"{source}: file ended before byte {offset + count} (truncated?)")
            offset += sent
            count -= sent


def convert(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    format: str = "skinvl",
    dtype: str | None = None,
    vision_tower: str | None = None,
    template: str = "mistral_instruct",
    image_aspect_ratio: str | None = None,
    max_shard_size: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Convert an authors'-format checkpoint ``src`` (folder or Hub id) into ``dst``.

    ``format`` is "skinvl" (native, loads with ``import skinvl`` or ``trust_remote_code=True``) or
    "llava" (stock transformers ``llava``). ``dtype`` casts the weights ("bfloat16", ...).
    ``max_shard_size`` (bytes) defaults to the largest source shard. Returns ``dst``.
    """
    from transformers import GenerationConfig, LlavaConfig, LlavaProcessor

    from .convert_original import build_processor, inspect_original, read_image_processor_settings
    from .modeling_skinvl import write_remote_code_files

    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}.")
    dst = Path(dst)
    if dst.exists() and any(dst.iterdir()) and not overwrite:
        raise FileExistsError(f"{dst} exists and is not empty; choose a new folder or pass --overwrite.")
    ckpt = inspect_original(src, vision_tower=vision_tower, template=template)
    out_dtype = _torch_dtype(dtype, None)
    entries = plan_conversion(ckpt, dtype=out_dtype)
    if max_shard_size is None:
        max_shard_size = max((f.stat().st_size for f in ckpt.weights.files), default=DEFAULT_MAX_SHARD_BYTES)
        max_shard_size = max(max_shard_size, 1)
    shards = _shard(entries, max_shard_size)
    dst.mkdir(parents=True, exist_ok=True)

    reader = _SourceReader()
    total = 0
    weight_map: dict[str, str] = {}
    try:
        from tqdm.auto import tqdm

        for number, shard in enumerate(tqdm(shards, desc="Writing shards", unit="shard",
                                            disable=len(shards) < 2), start=1):
            name = "model.safetensors" if len(shards) == 1 else \
                f"model-{number:05d}-of-{len(shards):05d}.safetensors"
            total += write_safetensors_streaming(dst / name, shard, reader)
            weight_map.update({entry.name: name for entry in shard})
    finally:
        reader.close()
    if len(shards) > 1:
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        (dst / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")

    config = ckpt.skinvl_config
    config.dtype = entries[0].dtype if entries else config.dtype
    if image_aspect_ratio is not None:
        config.image_aspect_ratio = image_aspect_ratio
    tokenizer = ckpt.tokenizer
    settings = read_image_processor_settings(ckpt.vision_source, ckpt.vision_config)
    generation = GenerationConfig(
        bos_token_id=ckpt.config.get("bos_token_id", tokenizer.bos_token_id),
        eos_token_id=ckpt.config.get("eos_token_id", tokenizer.eos_token_id),
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
    )
    if format == "skinvl":
        config.architectures = ["SkinVLForConditionalGeneration"]
        config.save_pretrained(dst)
        processor = build_processor(tokenizer, ckpt.vision_config, settings,
                                    image_aspect_ratio=config.image_aspect_ratio, template=template)
        processor.save_pretrained(dst)
        write_remote_code_files(dst)
    else:
        data = config.to_dict()
        for key in ("prompt_template", "image_aspect_ratio", "model_type", "auto_map",
                    "transformers_version"):
            data.pop(key, None)
        llava = LlavaConfig(**data)
        llava.architectures = ["LlavaForConditionalGeneration"]
        llava.save_pretrained(dst)
        processor = build_processor(tokenizer, ckpt.vision_config, settings,
                                    image_aspect_ratio=config.image_aspect_ratio, template=template,
                                    processor_class=LlavaProcessor)
        processor.save_pretrained(dst)
    generation.save_pretrained(dst)
    return dst


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add ``skinvl convert``."""
    parser = subparsers.add_parser(
        "convert",
        help="convert the authors' LLaVA-format SkinVL checkpoint to a native SkinVL or stock LLaVA one",
        description="Convert a checkpoint in the authors' original LLaVA format (model_type "
        "llava_mistral; a local folder or a Hub id such as zwq803/SkinVL-PubMM) into DST. "
        "Streams tensor by tensor (memory ~ the largest source shard).",
    )
    parser.add_argument("src", help="source folder or Hub id (authors' llava_mistral format)")
    parser.add_argument("dst", help="output folder (must be new or empty)")
    parser.add_argument("--format", choices=FORMATS, default="skinvl",
                        help="skinvl: native (auto_map, loads with trust_remote_code); llava: stock "
                        "transformers LlavaForConditionalGeneration (no custom code). Default: skinvl")
    parser.add_argument("--dtype", default=None, help="cast weights: float32, bfloat16 or float16 "
                        "(default: the checkpoint's)")
    parser.add_argument("--vision-tower", default=None,
                        help="CLIP folder or Hub id, when the checkpoint's mm_vision_tower is unreachable")
    parser.add_argument("--template", choices=["mistral_instruct", "vicuna_v1"], default="mistral_instruct",
                        help="default prompt template of the output (default: mistral_instruct)")
    parser.add_argument("--image-aspect-ratio", choices=["pad", "crop"], default=None,
                        help="default image preparation of the output (default: from the config, 'pad')")
    parser.add_argument("--max-shard-size", type=int, default=None,
                        help="bytes per output shard (default: the largest source shard)")
    parser.add_argument("--overwrite", action="store_true", help="allow a non-empty DST")
    parser.set_defaults(func=_run_convert)


def _run_convert(args: argparse.Namespace) -> int:
    import time

    from .convert_original import OriginalFormatError

    start = time.perf_counter()
    try:
        dst = convert(args.src, args.dst, format=args.format, dtype=args.dtype,
                      vision_tower=args.vision_tower, template=args.template,
                      image_aspect_ratio=args.image_aspect_ratio, max_shard_size=args.max_shard_size,
                      overwrite=args.overwrite)
    except (OriginalFormatError, FileExistsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.format} checkpoint to {dst} in {time.perf_counter() - start:.1f} s")
    return 0


__all__ = ["convert", "plan_conversion", "write_safetensors_streaming", "register_cli", "FORMATS"]
