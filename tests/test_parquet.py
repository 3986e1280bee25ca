"""The release's Parquet as datasets writes it: page index, content-defined chunking, decimal
sizes, the card's num_bytes as datasets computes it, and the licence the card links to."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest
from datasets.utils.py_utils import convert_file_size_to_int
from huggingface_hub import DatasetCard

from mm_skin.parquet import content_defined_chunking, parse_size

CDC = "use_content_defined_chunking" in inspect.signature(pq.ParquetWriter.__init__).parameters


def _shards(folder: Path) -> list[Path]:
    return sorted(folder.glob("*/*.parquet"))


def test_every_shard_has_a_page_index_and_content_defined_pages(vqa_folder):
    shards = _shards(vqa_folder)
    assert shards
    for path in shards:
        meta = pq.ParquetFile(path).metadata
        for i in range(meta.num_row_groups):
            for j in range(meta.num_columns):
                column = meta.row_group(i).column(j)
                assert column.has_offset_index, (path, column.path_in_schema)  # pages by row
                # min/max per page where the column keeps statistics (not image bytes)
                assert column.has_column_index == column.is_stats_set, (path, column.path_in_schema)
        if CDC:  # marked as datasets marks the files it chunks by content
            recorded = json.loads(meta.metadata[b"content_defined_chunking"])
            assert recorded == content_defined_chunking() == datasets.config.DEFAULT_CDC_OPTIONS


@pytest.mark.parametrize("size", ["500MB", "2GB", "100KB", "512MiB", "2GiB", "1KiB"])
def test_sizes_read_as_datasets_reads_them(size):
    assert parse_size(size) == convert_file_size_to_int(size)


def test_sizes_with_spaces_decimals_and_bad_ones():
    assert parse_size("500MB") == 500_000_000 and parse_size("1.5 GiB") == 1_610_612_736
    assert parse_size(" 20000 ") == 20_000 and parse_size(7) == 7
    with pytest.raises(ValueError, match=r"cannot parse size '5 XB': use e.g. 500MB"):
        parse_size("5 XB")


def test_card_num_bytes_are_what_datasets_computes(vqa_folder, tmp_path):
    """num_bytes, dataset_size and download_size equal what datasets' Parquet builder computes
    for the same files when the card does not tell it (num_bytes: the rows in Arrow memory)."""
    import shutil

    import yaml

    card = DatasetCard.load(vqa_folder / "README.md").data.to_dict()
    ours = {info["config_name"]: info for info in card["dataset_info"]}
    bare = tmp_path / "mm-skin"
    shutil.copytree(vqa_folder, bare)
    del card["dataset_info"]
    (bare / "README.md").write_text(f"---\n{yaml.safe_dump(card)}---\n", encoding="utf-8")
    for config in ("vqa", "instruct"):
        builder = datasets.load_dataset_builder(str(bare), config, cache_dir=str(tmp_path / "cache"))
        builder.download_and_prepare()
        computed = {name: split.num_bytes for name, split in builder.info.splits.items()}
        assert {s["name"]: s["num_bytes"] for s in ours[config]["splits"]} == computed, config
        assert ours[config]["dataset_size"] == builder.info.dataset_size
        assert ours[config]["download_size"] == builder.info.download_size


def test_licence_other_with_a_link_to_the_licence_file(vqa_folder):
    data = DatasetCard.load(vqa_folder / "README.md").data.to_dict()
    assert data["license"] == "other" and data["license_link"] == "LICENSE.md"
    text = (vqa_folder / data["license_link"]).read_text(encoding="utf-8")
    assert data["license_name"] in text and " ".join(data["license_details"].split()) in " ".join(text.split())
