"""`make demo`: the main job on the embedded default, end to end.

1. build the synthetic sample release (examples/mm-skin-sample, the authors' layout) into a
   Hub-ready folder with `mm-skin build`, then audit it with `mm-skin audit` (duplicate images
   and texts, and how much of the test split has a twin in train: demo-out/audit/audit.md);
2. load every config of it with plain `datasets.load_dataset`, as a user of the Hub folder would;
3. answer a question about a sample image with the `skinvl-tiny` preset (random weights: the
   answer is gibberish by design; it shows the plumbing, not a diagnosis);
4. score that tiny model on the sample's VQA test split with `skinvl eval vqa`.

Every step is the real command a user runs; the script stops at the first failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "mm-skin-sample"
OUT = ROOT / "demo-out"
BIN = Path(sys.executable).parent


def run(*cmd: str, cwd: Path = ROOT) -> None:
    """Run one CLI step, echoing it like a shell would."""
    print(f"\n$ {' '.join(cmd)}", flush=True)
    subprocess.run([str(BIN / cmd[0]), *cmd[1:]], cwd=cwd, check=True, env=os.environ)


def main() -> int:
    """Run the demo; returns the exit code."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir()
    folder = OUT / "mm-skin"
    run("mm-skin", "build", str(SAMPLE), "--out", str(folder))
    run("mm-skin", "audit", str(folder), "--out", str(OUT / "audit"))

    print("\n# load_dataset on the built folder, every config (no code of ours involved)")
    loader = (
        "from datasets import get_dataset_config_names, load_dataset\n"
        "for cfg in get_dataset_config_names('mm-skin'):\n"
        "    ds = load_dataset('mm-skin', cfg)\n"
        "    print(f'{cfg:12s}', {split: d.num_rows for split, d in ds.items()})\n"
        "row = load_dataset('mm-skin', 'vqa', split='test')[0]\n"
        "print('vqa test[0]:', row['image'].size, row['image_id'], '|', row['question'], '->', row['answer'])\n"
    )
    subprocess.run([sys.executable, "-c", loader], cwd=OUT, check=True)

    image = sorted((SAMPLE / "MM-SkinQA" / "dataset").glob("bk*.png"))[0]
    print("\n# skinvl-tiny has RANDOM weights: its answer is gibberish, by design (plumbing demo)")
    run("skinvl", "generate", "--model", "skinvl-tiny", "--image", str(image),
        "--question", "What type of lesion is shown in this image?", "--max-new-tokens", "12")

    run("skinvl", "eval", "vqa", "--model", "skinvl-tiny", "--data", str(folder),
        "--split", "test", "--batch-size", "8", "--max-new-tokens", "16", "--out", str(OUT / "eval-vqa"))
    print(f"\nDone. Built folder: {folder}; audit: {OUT / 'audit' / 'audit.md'}; "
          f"evaluation report: {OUT / 'eval-vqa'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
