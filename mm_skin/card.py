"""The dataset card of a built folder: statistics read back from the Parquet files, a figure,
and ``cards/dataset_card.md.jinja`` rendered with the YAML header ``datasets`` and the Hub read.

The card templates and the one BibTeX entry live in ``cards/`` of a source checkout (and
editable installs); a wheel installs the same folder as ``mm_skin/cards/`` inside this package
(pyproject.toml's package-dir). :data:`CARDS_DIR`, :func:`citation` and :func:`render_template`
are the one lookup and the one Jinja2 environment for every card (dataset and model).

>>> citation().startswith("@article{zeng2025mmskin")
True
"""

from __future__ import annotations

import collections
import threading
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq

from mm_skin import __version__
from mm_skin.audit_report import render_card_section
from mm_skin.report import BuildReport
from mm_skin.schema import ALL_CONFIGS, DEFAULT_CONFIG, MODALITIES, SPLITS, TEXTBOOKS, features_for
from mm_skin.untrusted import card_code, card_text

_TOP = Path(__file__).resolve().parent.parent
CARDS_DIR: Path = next((d for d in (_TOP / "cards", Path(__file__).resolve().parent / "cards") if d.is_dir()), _TOP / "cards")
DATASET_CARD_TEMPLATE = "dataset_card.md.jinja"
# What the card's snippets pass to load_dataset: the folder's default name, run beside it (a
# reader of the Hub copy puts the repo id there).
LOAD_NAME = "mm-skin"
# One BibTeX entry for both cards (cards/citation.bib), read where it is needed.
CITATION_FILE = CARDS_DIR / "citation.bib"


def citation() -> str:
    """The BibTeX entry of the MM-Skin paper, as both cards cite it."""
    return CITATION_FILE.read_text(encoding="utf-8").strip()


def render_template(name: str, **context: Any) -> str:
    """Render the card template ``CARDS_DIR / name`` (undefined names are errors, not blanks)."""
    import jinja2

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True,
                             lstrip_blocks=True)
    return env.from_string((CARDS_DIR / name).read_text(encoding="utf-8")).render(**context)


def _size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return label
    return "1M<n<10M"


def _length_stats(texts: Sequence[str]) -> dict[str, float]:
    if not texts:
        return {"n": 0, "mean": 0.0, "median": 0.0, "p95": 0.0, "max": 0}
    lengths = sorted(len(t.split()) for t in texts)
    n = len(lengths)
    return {"n": n, "mean": sum(lengths) / n, "median": float(lengths[n // 2]), "p95": float(lengths[min(n - 1, int(0.95 * n))]), "max": lengths[-1]}


def arrow_nbytes(path: Path) -> int:
    """Bytes of a Parquet file's rows in Arrow memory: the ``num_bytes`` that ``datasets`` records
    for a split (``push_to_hub``: the table's ``nbytes``), read one row group at a time."""
    parquet = pq.ParquetFile(path)
    return sum(parquet.read_row_group(i).nbytes for i in range(parquet.num_row_groups))


def split_info_yaml(features: Any, rows: dict[str, int], file_bytes: dict[str, int],
                    arrow_bytes: dict[str, int]) -> dict[str, Any]:
    """One config's ``dataset_info`` YAML as ``datasets`` writes it: rows and in-memory Arrow bytes
    per split (``num_bytes``, :func:`arrow_nbytes`), the Parquet files' size as ``download_size``."""

    info = datasets.DatasetInfo(
        features=features,
        splits=datasets.SplitDict(
            {s: datasets.SplitInfo(name=s, num_examples=rows[s], num_bytes=arrow_bytes[s]) for s in rows}),
        download_size=sum(file_bytes.values()),  # the Parquet files
        dataset_size=sum(arrow_bytes.values()),  # in memory, as loaded
    )
    return info._to_yaml_dict()


def compute_statistics(folder: Path, shards: dict[str, dict[str, list[str]]]) -> dict[str, Any]:
    """Statistics read back from the written Parquet files (text columns only, no image bytes)."""
    stats: dict[str, Any] = {"rows": {}, "bytes": {}, "nbytes": {}, "modality": {}, "textbook": {}, "lengths": {}}
    texts: dict[str, list[str]] = collections.defaultdict(list)
    textbook: dict[int | None, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for cfg, splits in shards.items():
        for split, paths in splits.items():
            stats["rows"].setdefault(cfg, {})[split] = sum(pq.read_metadata(folder / p).num_rows for p in paths)
            stats["bytes"].setdefault(cfg, {})[split] = sum((folder / p).stat().st_size for p in paths)
            stats["nbytes"].setdefault(cfg, {})[split] = sum(arrow_nbytes(folder / p) for p in paths)
            if cfg in ("captions", "instruct"):
                continue
            cols = ["modality", "textbook_id"] + (["question", "answer"] if cfg == "vqa" else ["caption"])
            table = pa.concat_tables(pq.read_table(folder / p, columns=cols) for p in paths)
            d = table.to_pydict()
            mod_counts = collections.Counter(MODALITIES[m] if m is not None else "unknown" for m in d["modality"])
            stats["modality"].setdefault(cfg, {})[split] = dict(mod_counts)
            for t in d["textbook_id"]:
                textbook[t][f"{cfg}/{split}"] += 1
            for col in cols[2:]:
                texts[f"{col} ({cfg})" if col == "caption" else col].extend(d[col])
    stats["textbook"] = {k: dict(v) for k, v in sorted(textbook.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))}
    caption_texts = [t for k, v in texts.items() if k.startswith("caption") for t in v]
    stats["lengths"] = {
        "caption": _length_stats(caption_texts),
        "question": _length_stats(texts.get("question", [])),
        "answer": _length_stats(texts.get("answer", [])),
    }
    stats["_caption_lengths"] = [len(t.split()) for t in caption_texts]
    stats["_answer_lengths"] = [len(t.split()) for t in texts.get("answer", [])]
    return stats


def _import_card_modules() -> None:
    import jinja2  # noqa: F401
    import matplotlib
    import yaml  # noqa: F401

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401


def start_card_imports() -> threading.Thread:
    """Import the card's modules (matplotlib: ~1 s) on a thread while the images are written.

    The writes spend their time outside the GIL (copies, page-cache writes), so the imports
    cost almost no wall time there instead of a fixed second at the end of every build.
    An import error is not lost: :func:`card_context` imports the same modules again.
    """
    def run() -> None:
        try:
            _import_card_modules()
        except Exception:  # noqa: BLE001 - card_context's own import raises it with its traceback
            pass

    thread = threading.Thread(target=run, name="mm-skin-card-imports", daemon=True)
    thread.start()
    return thread


def draw_statistics(stats: dict[str, Any], path: Path) -> None:
    """A PNG with images per textbook and modality, and caption / answer length histograms."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), dpi=90)
    books = [b for b in stats["textbook"] if b is not None]
    bottoms = [0] * len(books)
    for m in MODALITIES:
        counts = [sum(stats["textbook"][b].get(f"{m}/{s}", 0) for s in SPLITS) for b in books]
        ax1.bar([f"bk{b}" for b in books], counts, bottom=bottoms, label=m)
        bottoms = [a + c for a, c in zip(bottoms, counts, strict=True)]
    ax1.set_title("Captioned images per textbook")
    ax1.set_ylabel("images")
    ax1.tick_params(axis="x", rotation=60)
    ax1.legend()
    for key, label in (("_caption_lengths", "captions"), ("_answer_lengths", "VQA answers")):
        if stats[key]:
            ax2.hist(stats[key], bins=30, alpha=0.6, label=label)
    ax2.set_title("Length (words)")
    ax2.set_xlabel("words")
    ax2.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    # fixed metadata: the same data gives the same PNG bytes, so an unchanged re-push is a no-op
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def _card_configs(shards: dict[str, dict[str, list[str]]], stats: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The card's ``configs`` (data files, one default) and ``dataset_info`` YAML entries."""
    order = [c for c in ALL_CONFIGS if c in shards]
    configs = []
    infos = []
    for cfg in order:
        entry: dict[str, Any] = {"config_name": cfg}
        if cfg == DEFAULT_CONFIG or (DEFAULT_CONFIG not in shards and cfg == order[0]):
            entry["default"] = True
        entry["data_files"] = [{"split": s, "path": shards[cfg][s]} for s in SPLITS if s in shards[cfg]]
        configs.append(entry)
        rows = {s: stats["rows"][cfg][s] for s in shards[cfg]}
        infos.append({"config_name": cfg, **split_info_yaml(features_for(cfg), rows, stats["bytes"][cfg],
                                                            stats["nbytes"][cfg])})
    return configs, infos


def card_context(folder: Path, shards: dict[str, dict[str, list[str]]], report: BuildReport) -> dict[str, Any]:
    """What cards/dataset_card.md.jinja needs of a built folder, but the audit section
    (computes the statistics and draws assets/statistics.png once)."""
    import yaml

    stats = compute_statistics(folder, shards)
    draw_statistics(stats, folder / "assets" / "statistics.png")
    configs, infos = _card_configs(shards, stats)
    total_rows = sum(stats["rows"].get("vqa", {}).values()) + sum(stats["rows"].get("captions", {}).values())

    def dump(obj: Any) -> str:
        return yaml.safe_dump(obj, sort_keys=False, allow_unicode=True, width=1000).rstrip()

    return dict(
        configs_yaml=dump({"configs": configs}),
        dataset_info_yaml=dump({"dataset_info": infos}),
        size_category=_size_category(total_rows),
        stats=stats,
        configs=[c["config_name"] for c in configs],
        default_config=next(c["config_name"] for c in configs if c.get("default")),
        modalities=MODALITIES,
        textbooks=TEXTBOOKS,
        # What comes from the release (file names, its notes, its description, modality strings)
        # is data: escaped here, on its way into Markdown (card_code: inside the template's `...`).
        files={card_code(name): counts for name, counts in report.files.items()},
        notes=[card_text(note) for note in report.notes],
        report=types.SimpleNamespace(test_file=card_code(report.test_file or ""), images=report.images),
        skipped=len(report.skipped),
        warnings=len(report.warnings),
        has_test=any("test" in s for s in shards.values()),
        modality_values={card_code(raw): m for raw, m in report.modality_values.items()},
        synthetic=card_text(report.synthetic) if report.synthetic else None,
        citation=citation(),
        version=__version__,
        load_name=LOAD_NAME,
    )


LICENSE_FILE = "LICENSE.md"  # the card's license_link (the Hub's convention for `license: other`)


def license_file(card: str) -> str:
    """The LICENSE.md a build writes beside its card: the card's ``license_details``, as Markdown."""
    from huggingface_hub import DatasetCard

    data = DatasetCard(card).data  # the front matter, read as the Hub reads it
    return f"# Licence of this dataset: {data.license_name}\n\n{data.license_details.strip()}\n"


def render_dataset_card(context: dict[str, Any], audit_summary: dict[str, Any] | None = None) -> str:
    """The dataset card from :func:`card_context`, with the "Duplicates and overlap" section of
    an audit's ``summary`` (``None``: the section says the build was not audited)."""
    return render_template(DATASET_CARD_TEMPLATE, **context,
                           audit_section=render_card_section(audit_summary, LOAD_NAME).rstrip())
