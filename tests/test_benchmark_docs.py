"""The blocks of docs/benchmarks.md marked ``<!-- tested: stand-ins -->`` run, in order, beside
stand-ins of the downloads they name (tiny generated images in each publisher's layout)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import benchmark_layouts as layouts

import mm_skin_dataset
from skinvl.cli import main as skinvl_main

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
MARKER = "<!-- tested: stand-ins -->"


def _tested_blocks() -> list[tuple[str, str]]:
    text = DOC.read_text(encoding="utf-8")
    return re.findall(re.escape(MARKER) + r"\n```(\w+)\n(.*?)```", text, flags=re.S)


def _stand_ins(root: Path) -> None:
    ham = layouts.ham10000(root / "ham10000-download", n=20)
    copies = tuple((p.stem, p.read_bytes()) for p in sorted(ham.rglob("*.jpg"))[:3])
    layouts.isic2019(root / "isic2019-download", ham_ids=copies, n=8)
    layouts.ddi(root / "ddi-download", n=24)
    (root / "hiba-images").mkdir()
    for i in range(4):
        (root / "hiba-images" / f"ISIC_{i:07d}.jpg").write_bytes(layouts.image_bytes(700 + i))
    layouts.authors_test_file(root / "HIBA_2class_test.csv",
                              [(f"HIBA/ISIC_{i:07d}.jpg", ["Benign", "Malignant"][i % 2]) for i in range(4)])


def test_documented_blocks_run_on_stand_ins(tmp_path, monkeypatch):
    blocks = _tested_blocks()
    assert [lang for lang, _ in blocks] == ["bash", "python", "bash", "bash"]
    _stand_ins(tmp_path)
    monkeypatch.chdir(tmp_path)
    for lang, body in blocks:
        if lang == "python":
            exec(compile(body, str(DOC), "exec"), {})
            continue
        for line in body.strip().splitlines():
            argv = shlex.split(line)
            main = {"mm-skin": mm_skin_dataset.main, "skinvl": skinvl_main}[argv[0]]
            assert main(argv[1:]) == 0, line
    audit = json.loads((tmp_path / "isic2019.audit" / "audit.json").read_text())
    assert audit["summary"]["against"]["ham10000"]["same_image_id"] == 3
    grouped = json.loads((tmp_path / "ddi-zeroshot" / "results.json").read_text())
    assert grouped["groups"]["column"] == "skin_type"
    assert "auroc" in json.loads((tmp_path / "ddi-likelihood" / "results.json").read_text())["metrics"]
