"""Duplicate clusters (bounded example pairs, memory linear in images), label conflicts, and
``--against`` a benchmark folder (HAM10000 images inside ISIC 2019, by id and by pixels)."""

from __future__ import annotations

import io

import benchmark_layouts as layouts
from PIL import Image

from mm_skin.audit import audit, collect, find_clusters
from mm_skin.audit_clusters import EXAMPLE_PAIRS, Clusters
from mm_skin.audit_sources import SourceRow
from mm_skin.benchmarks.write import build_benchmark


def _near_copy(seed: int, k: int) -> bytes:
    """The same picture with one pixel nudged: other bytes and pixels, a near duplicate."""
    img = Image.open(io.BytesIO(layouts.image_bytes(seed, "PNG"))).convert("RGB").resize((64, 64))
    img.putpixel((k % 64, k // 64 % 64), (k % 256, 0, 0))
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def test_two_thousand_identical_images_are_one_cluster_with_bounded_pairs():
    data = layouts.image_bytes(7, "PNG")
    rows = (SourceRow("default", "train", i, [f"img{i}"], [data]) for i in range(2000))
    collected = collect(rows, progress=False)
    clusters = find_clusters(collected.images)
    assert clusters.links == 1999  # a chain, not 1,999,000 pairs
    assert len(clusters.pairs()) <= EXAMPLE_PAIRS
    assert [len(keys) for keys in clusters.members().values()] == [2000]


def test_near_copies_form_one_near_cluster_with_bounded_pairs():
    rows = [SourceRow("default", "train", k, [f"near{k}"], [_near_copy(3, k)]) for k in range(60)]
    clusters = find_clusters(collect(rows, progress=False).images)
    assert [len(keys) for keys in clusters.members().values()] == [60]
    pairs = clusters.pairs()
    assert len(pairs) == EXAMPLE_PAIRS and all(p.kind in ("near", "exact") for p in pairs)


def test_examples_of_merged_clusters_are_kept_bounded_and_closest_first():
    found = Clusters()
    for i in range(20):
        found.link(f"a{i}", f"a{i + 1}", "near", "perceptual", 20 - i)
    found.link("b0", "b1", "exact", "bytes", 0)
    found.link("a0", "b0", "near", "perceptual", 3)
    pairs = found.pairs()
    assert len(pairs) == EXAMPLE_PAIRS and pairs[0].kind == "exact"
    assert [p.distance for p in pairs[1:]] == sorted(p.distance for p in pairs[1:])
    assert found.exact.root("b1") == found.exact.root("b0") != found.exact.root("a0")


def test_audit_report_lists_clusters_with_every_member(tmp_path):
    data = layouts.image_bytes(11, "PNG")
    folder = layouts.dermnet(tmp_path / "d")
    for i in range(30):
        (folder / "train" / "Eczema Photos" / f"copy{i}.jpg").write_bytes(data)
    build_benchmark("dermnet", folder, tmp_path / "built")
    report = audit(tmp_path / "built", out=tmp_path / "audit", progress=False)
    biggest = report["image_clusters"][0]
    assert biggest["kind"] == "exact" and biggest["size"] == 30 and len(biggest["images"]) == 30
    assert len(report["image_pairs"]) <= EXAMPLE_PAIRS * len(report["image_clusters"])
    assert "## Duplicate image clusters" in (tmp_path / "audit" / "audit.md").read_text()


def test_label_conflict_within_one_dataset(tmp_path):
    folder = layouts.dermnet(tmp_path / "d")
    twin = (folder / "train" / "Acne and Rosacea Photos" / "train-0-0.jpg").read_bytes()
    (folder / "train" / "Eczema Photos" / "refiled.jpg").write_bytes(twin)  # one image under two classes
    build_benchmark("dermnet", folder, tmp_path / "built")
    report = audit(tmp_path / "built", out=tmp_path / "audit", progress=False)
    [conflict] = report["label_conflicts"]
    assert conflict["scope"] == "within" and conflict["configs"] == ["disease"]
    assert {m["label"] for m in conflict["images"]} == {"Acne and Rosacea Photos", "Eczema Photos"}
    assert "## Label conflicts" in (tmp_path / "audit" / "audit.md").read_text()


def test_ham10000_inside_isic2019_by_id_and_by_pixels(tmp_path):
    ham = layouts.ham10000(tmp_path / "ham", n=10)
    ham_images = sorted(ham.rglob("*.jpg"))[:4]
    # ISIC 2019 re-ships HAM10000 images under the same ids (and labels), one relabelled here
    isic = layouts.isic2019(tmp_path / "isic", ham_ids=tuple((p.stem, p.read_bytes()) for p in ham_images), n=6)
    build_benchmark("ham10000", ham, tmp_path / "ham-built")
    build_benchmark("isic2019", isic, tmp_path / "isic-built")
    report = audit(tmp_path / "isic-built", against=[tmp_path / "ham-built"], out=tmp_path / "audit", progress=False)
    against = report["summary"]["against"]["ham-built"]
    assert against["images"] == 10 and against["same_image_id"] == 4
    assert sum(v["exact"] for v in against["twin_in_split"].values()) == 4
    across = [c for c in report["label_conflicts"] if c["scope"] == "across"]
    assert across  # the stand-ins' ISIC labels are not HAM's for these images
    assert all({m["config"] for m in c["images"]} >= {"against:ham-built"} for c in across)


def test_many_copies_across_test_and_train_are_counted_per_image():
    from mm_skin.audit import split_summary

    data = layouts.image_bytes(5, "PNG")
    rows = [SourceRow("default", "train" if i % 2 else "test", i, [f"img{i}"], [data]) for i in range(2000)]
    collected = collect(rows, progress=False)
    summary = split_summary(collected, find_clusters(collected.images), "test", "train", {})
    assert summary["images"] == {"test": 1000, "same_image_id": 0, "exact_twin": 1000, "near_twin": 0, "any_twin": 1000}
    assert len(summary["train_twins_of_test"]["exact"]) == 1000


def test_hub_streaming_reads_the_class_names_like_the_folder(tmp_path):
    from mm_skin import audit_sources

    build_benchmark("dermnet", layouts.dermnet(tmp_path / "d"), tmp_path / "built")
    local = list(audit_sources.iter_folder(audit_sources.folder_splits(tmp_path / "built")))
    streamed = list(audit_sources.iter_hub(str(tmp_path / "built"), audit_sources.hub_configs(str(tmp_path / "built"))))
    assert sorted((r.image_ids[0], r.label) for r in streamed) == sorted((r.image_ids[0], r.label) for r in local)
    assert {r.label for r in local} == {"Acne and Rosacea Photos", "Eczema Photos"}
