"""Benchmark `mm-skin audit` on many copies of one image: memory must stay linear in images.

    python bench/audit_duplicates.py                     # 1,000 and 4,000 copies
    python bench/audit_duplicates.py --scales 3000 12000

Each scale runs `mm_skin.audit.audit` on a built folder of N rows that all hold the same tiny
image (under N ids: N exact duplicates) in a fresh subprocess, and prints its peak RSS, seconds,
the clusters and the example pairs kept. Before the clusters, the audit kept every pair: 3,000
copies (4.5 million pairs) passed 8 GB. The ratio of peak RSS above the interpreter's baseline
(an audit of 10 rows, same run) between the two scales should follow the ratio of the scales,
not its square.
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import datasets
from PIL import Image

from mm_skin.audit import audit


def _folder(root: Path, n: int) -> Path:
    buffer = io.BytesIO()
    Image.new("RGB", (24, 24), (180, 40, 90)).save(buffer, "PNG")
    data = buffer.getvalue()
    features = datasets.Features({"image": datasets.Image(), "image_id": datasets.Value("string")})
    ds = datasets.Dataset.from_dict({"image": [{"bytes": data, "path": None}] * n,
                                     "image_id": [f"copy{i}" for i in range(n)]}, features=features)
    (root / "default").mkdir(parents=True)
    ds.to_parquet(str(root / "default" / "train-00000-of-00001.parquet"))
    (root / "README.md").write_text("---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n"
                                    "    path: default/train-00000-of-00001.parquet\n---\n")
    return root


def child(n: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = _folder(Path(tmp) / "copies", n)
        start = time.perf_counter()
        report = audit(folder, out=Path(tmp) / "audit", progress=False)
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "clusters": len(report["image_clusters"]), "largest": report["image_clusters"][0]["size"],
            "pairs_kept": len(report["image_pairs"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=int, nargs=2, default=[1000, 4000])
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return
    runs = {}
    for n in (10, *args.scales):
        out = subprocess.run([sys.executable, __file__, "--child", str(n)], check=True, capture_output=True, text=True)
        runs[n] = json.loads(out.stdout.strip().splitlines()[-1])
        r = runs[n]
        print(f"{n:>6} copies: {r['seconds']:6.2f} s  peak RSS {r['peak_rss_mb']:6.0f} MB  clusters {r['clusters']} "
              f"(largest {r['largest']})  example pairs kept {r['pairs_kept']}")
    base = runs[10]["peak_rss_mb"]
    small, large = args.scales
    growth = (runs[large]["peak_rss_mb"] - base) / max(runs[small]["peak_rss_mb"] - base, 1e-9)
    print(f"RSS above baseline, large/small: {growth:.2f} (scales ratio {large / small:.1f}; quadratic would be "
          f"{(large / small) ** 2:.0f})")


if __name__ == "__main__":
    main()
