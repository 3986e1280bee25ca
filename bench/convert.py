"""Benchmark ``skinvl convert`` on a synthetic >= 2 GB checkpoint in the authors' LLaVA format.

Writes a random-weight ``llava_mistral`` checkpoint sharded like a real one (safetensors shards +
``model.safetensors.index.json``, tokenizer.model, CLIP tower in its own folder), then, in the same
run, measures:

* a plain copy of the same weight files (the baseline),
* ``convert --format skinvl`` in a fresh child process (wall time of the conversion itself, and the
  child's peak RSS from ``wait4``),

and prints the medians, the ratio to the copy time and the peak RSS against the largest shard.
Targets: conversion <= 2x copy time; peak RSS <= largest shard + 512 MiB.

    .venv/bin/python bench/convert.py [--workdir DIR] [--layers 20] [--repeats 3] [--keep]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HIDDEN, INTERMEDIATE, HEADS, KV_HEADS = 2048, 5632, 16, 4
CLIP = {"hidden_size": 256, "intermediate_size": 1024, "num_hidden_layers": 4, "num_attention_heads": 4,
        "image_size": 336, "patch_size": 14, "projection_dim": 128, "model_type": "clip_vision_model"}
CORPUS = [
    "A chat between a curious user and an artificial intelligence assistant.",
    "USER: ASSISTANT: [INST] [/INST] What type of lesion is shown in this image?",
    "Erythematous scaly plaque; dermoscopy shows dotted vessels; histology shows acanthosis.",
] * 6


def _write_tokenizer(folder: Path) -> int:
    import sentencepiece as spm

    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS), model_writer=buffer, vocab_size=320, model_type="bpe",
        byte_fallback=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, hard_vocab_limit=False, minloglevel=2,
    )
    (folder / "tokenizer.model").write_bytes(buffer.getvalue())
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "LlamaTokenizer", "legacy": True, "pad_token": "<unk>"}))
    return spm.SentencePieceProcessor(model_proto=buffer.getvalue()).get_piece_size()


def build_checkpoint(folder: Path, layers: int, shard_bytes: int) -> list[Path]:
    """Write the synthetic checkpoint; return its weight shard files."""
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    rows = _write_tokenizer(folder)
    clip = folder / "clip"
    clip.mkdir()
    (clip / "config.json").write_text(json.dumps({"model_type": "clip", "vision_config": CLIP}))
    generator = torch.Generator().manual_seed(0)

    def rand(*shape):
        return (torch.randn(*shape, generator=generator) * 0.02).to(torch.bfloat16)

    vision = {"vision_model.embeddings.class_embedding": rand(256),
              "vision_model.embeddings.patch_embedding.weight": rand(256, 3, 14, 14),
              "vision_model.embeddings.position_embedding.weight": rand(577, 256),
              "vision_model.pre_layrnorm.weight": rand(256), "vision_model.pre_layrnorm.bias": rand(256),
              "vision_model.post_layernorm.weight": rand(256), "vision_model.post_layernorm.bias": rand(256)}
    for i in range(CLIP["num_hidden_layers"]):
        p = f"vision_model.encoder.layers.{i}."
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            vision[p + f"self_attn.{name}.weight"], vision[p + f"self_attn.{name}.bias"] = rand(256, 256), rand(256)
        vision[p + "mlp.fc1.weight"], vision[p + "mlp.fc1.bias"] = rand(1024, 256), rand(1024)
        vision[p + "mlp.fc2.weight"], vision[p + "mlp.fc2.bias"] = rand(256, 1024), rand(256)
        for norm in ("layer_norm1", "layer_norm2"):
            vision[p + f"{norm}.weight"], vision[p + f"{norm}.bias"] = rand(256), rand(256)
    save_file(vision, str(clip / "model.safetensors"), metadata={"format": "pt"})

    head_dim = HIDDEN // HEADS

    def layer(i):
        p = f"model.layers.{i}."
        return {p + "self_attn.q_proj.weight": rand(HIDDEN, HIDDEN),
                p + "self_attn.k_proj.weight": rand(KV_HEADS * head_dim, HIDDEN),
                p + "self_attn.v_proj.weight": rand(KV_HEADS * head_dim, HIDDEN),
                p + "self_attn.o_proj.weight": rand(HIDDEN, HIDDEN),
                p + "mlp.gate_proj.weight": rand(INTERMEDIATE, HIDDEN),
                p + "mlp.up_proj.weight": rand(INTERMEDIATE, HIDDEN),
                p + "mlp.down_proj.weight": rand(HIDDEN, INTERMEDIATE),
                p + "input_layernorm.weight": rand(HIDDEN), p + "post_attention_layernorm.weight": rand(HIDDEN)}

    pieces = [{"model.embed_tokens.weight": rand(rows, HIDDEN)}]
    pieces += [layer(i) for i in range(layers)]
    pieces.append({"model.norm.weight": rand(HIDDEN), "lm_head.weight": rand(rows, HIDDEN),
                   "model.mm_projector.0.weight": rand(HIDDEN, 256), "model.mm_projector.0.bias": rand(HIDDEN),
                   "model.mm_projector.2.weight": rand(HIDDEN, HIDDEN), "model.mm_projector.2.bias": rand(HIDDEN)})
    shards: list[dict] = [{}]
    size = 0
    for piece in pieces:  # generated lazily per layer above would be nicer; 2 GB fits in RAM here
        piece_bytes = sum(t.numel() * 2 for t in piece.values())
        if shards[-1] and size + piece_bytes > shard_bytes:
            shards.append({})
            size = 0
        shards[-1].update(piece)
        size += piece_bytes
    files, weight_map, total = [], {}, 0
    for number, shard in enumerate(shards, start=1):
        name = f"model-{number:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(folder / name), metadata={"format": "pt"})
        files.append(folder / name)
        weight_map.update({k: name for k in shard})
        total += sum(t.numel() * 2 for t in shard.values())
    del shards, pieces
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}))
    (folder / "config.json").write_text(json.dumps({
        "architectures": ["LlavaMistralForCausalLM"], "model_type": "llava_mistral", "vocab_size": rows,
        "hidden_size": HIDDEN, "intermediate_size": INTERMEDIATE, "num_hidden_layers": layers,
        "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS, "hidden_act": "silu",
        "max_position_embeddings": 32768, "rms_norm_eps": 1e-5, "rope_theta": 1e6, "sliding_window": None,
        "bos_token_id": 1, "eos_token_id": 2, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
        "mm_vision_tower": "clip", "mm_projector_type": "linear", "mm_hidden_size": 256,
        "mm_vision_select_layer": -2, "mm_vision_select_feature": "patch", "mm_patch_merge_type": "flat",
        "image_aspect_ratio": "pad", "use_cache": False}))
    return files


_CHILD = """
import sys, time, os
os.environ.setdefault("HF_HUB_OFFLINE", "1")
from skinvl.convert import convert
start = time.perf_counter()
convert(sys.argv[1], sys.argv[2], format="skinvl")
print("CONVERT_SECONDS", time.perf_counter() - start)
# VmHWM is this process's own peak RSS since exec (ru_maxrss would include the forking parent's).
print("PEAK_RSS_KIB", next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM")))
"""


def run_convert(src: Path, dst: Path) -> tuple[float, float, int]:
    """Convert in a fresh process; return (convert seconds, child wall seconds, peak RSS bytes)."""
    os.sync()  # start from clean page cache writeback, like the copy
    start = time.perf_counter()
    child = subprocess.run([sys.executable, "-c", _CHILD, str(src), str(dst)], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if child.returncode != 0:
        raise SystemExit(f"conversion failed:\n{child.stderr[-3000:]}")
    values = dict(line.split()[:2] for line in child.stdout.splitlines() if line.startswith(("CONVERT_", "PEAK_")))
    return float(values["CONVERT_SECONDS"]), wall, int(values["PEAK_RSS_KIB"]) * 1024


def run_copy(files: list[Path], dst: Path) -> float:
    """Plain copy of the weight files (no fsync, like the conversion)."""
    dst.mkdir()
    os.sync()
    start = time.perf_counter()
    for file in files:
        shutil.copyfile(file, dst / file.name)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default=None, help="where to write (default: a temp dir under /work or /tmp)")
    parser.add_argument("--layers", type=int, default=23, help="decoder layers (23 -> ~2.1 GB in bf16)")
    parser.add_argument("--shard-mib", type=int, default=700, help="source shard size in MiB")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the files")
    args = parser.parse_args()

    base = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="skinvl-bench-",
                                                                     dir="/work" if Path("/work").is_dir() else None))
    base.mkdir(parents=True, exist_ok=True)
    src = base / "original"
    try:
        t0 = time.perf_counter()
        files = build_checkpoint(src, args.layers, args.shard_mib * 1024**2)
        sizes = [f.stat().st_size for f in files]
        print(f"synthetic checkpoint: {sum(sizes) / 1e9:.2f} GB in {len(files)} shards "
              f"(largest {max(sizes) / 2**20:.0f} MiB), written in {time.perf_counter() - t0:.0f} s")
        if args.repeats < 1:
            return 0
        copies, converts, walls, peaks = [], [], [], []
        for repeat in range(args.repeats):
            copies.append(run_copy(files + [src / "clip/model.safetensors"], base / f"copy{repeat}"))
            shutil.rmtree(base / f"copy{repeat}")
            seconds, wall, peak = run_convert(src, base / f"out{repeat}")
            converts.append(seconds)
            walls.append(wall)
            peaks.append(peak)
            out_bytes = sum(f.stat().st_size for f in (base / f"out{repeat}").glob("*.safetensors"))
            shutil.rmtree(base / f"out{repeat}")
            print(f"run {repeat + 1}: copy {copies[-1]:.2f} s | convert {seconds:.2f} s (child wall {wall:.2f} s) "
                  f"| peak RSS {peak / 2**20:.0f} MiB | output {out_bytes / 1e9:.2f} GB")
        copy_s, convert_s = statistics.median(copies), statistics.median(converts)
        largest = max(sizes)
        peak = max(peaks)
        print(f"\nmedian copy time        {copy_s:.2f} s")
        print(f"median conversion time  {convert_s:.2f} s  -> {convert_s / copy_s:.2f}x copy (target <= 2x)")
        print(f"median child wall time  {statistics.median(walls):.2f} s (includes interpreter + torch import)")
        print(f"peak RSS (max of runs)  {peak / 2**20:.0f} MiB vs largest shard {largest / 2**20:.0f} MiB: "
              f"{(peak - largest) / 2**20:+.0f} MiB over the shard (target <= +512 MiB)")
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
