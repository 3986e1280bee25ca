"""The provenance block every results.md starts with: what was evaluated, on what, how, by which tool, when.

Read from the results.json payload of any ``skinvl eval`` command, so the Markdown can never say
something the JSON does not: model (revision, weights hash), dataset and its row fingerprint,
split, protocol, decoding, judge, whether the run was blind, the tool's version and the date.
Unknown items say "not recorded" rather than disappearing: a reader sees what is missing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

NOT_RECORDED = "not recorded"


def synthetic_data(data: str | None) -> str | None:
    """What a synthetic stand-in dataset is (its build report says so), None for real data or a Hub id."""
    report = Path(data) / "build_report.json" if data else None
    if report is None or not report.is_file():
        return None
    try:
        value = json.loads(report.read_text(encoding="utf-8")).get("synthetic")
    except (OSError, ValueError, AttributeError):
        return None
    return str(value) if value else None


def _model(doc: dict[str, Any]) -> str:
    info = doc.get("model_info") or {}
    name = info.get("model") or info.get("model_name") or doc.get("model")
    if not name:
        source = doc.get("predictions_file")
        return f"{NOT_RECORDED} (answers read from `{source}`)" if source else NOT_RECORDED
    parts = [f"`{name}`"]
    if info.get("endpoint"):
        parts.append(f"served at {info['endpoint']}")
    parts.append(f"revision {info.get('revision') or NOT_RECORDED}")
    parts.append(f"weights blake2b {info.get('weights_blake2b') or NOT_RECORDED}")
    return ", ".join(parts)


def _dataset(doc: dict[str, Any]) -> str:
    info = doc.get("dataset_info") or {}
    name = doc.get("dataset") or info.get("data")
    if not name:
        return NOT_RECORDED
    text = f"`{name}`" + (f" (config {doc['config']})" if doc.get("config") else "")
    if info.get("row_ids_blake2b"):
        text += f", {info.get('rows')} rows, fingerprint {info['row_ids_blake2b']}"
    if doc.get("synthetic_data"):
        text += " **(synthetic data, not MM-Skin)**"
    return text


def _judge(doc: dict[str, Any]) -> str:
    judge = doc.get("judge")
    if not judge:
        return "none"
    rubric = judge.get("rubric") or {}
    return f"`{judge.get('id')}`, rubric {rubric.get('name')} ({rubric.get('hash')})"


def provenance_items(doc: dict[str, Any]) -> dict[str, str]:
    """What identifies a run, by label (Model, Dataset, Split, Decoding, Judge, Blind run, Tool), from
    its results.json payload: the lines of :func:`provenance_header`, for other tables to quote."""
    from mm_skin import __version__
    from skinvl.evaluation.runs import now

    decoding = doc.get("decoding")
    blind = doc.get("blind")
    return {
        "Model": _model(doc),
        "Dataset": _dataset(doc),
        "Split": f"{doc.get('split') or NOT_RECORDED}; protocol: {doc.get('protocol') or NOT_RECORDED}",
        "Decoding": json.dumps(decoding, sort_keys=True) if decoding else NOT_RECORDED,
        "Judge": _judge(doc),
        **({"**Blind run**": f"image {blind['image']} ({blind['how']})"} if blind else {}),
        "Tool": f"skinvl {__version__}; date: {doc.get('finished_at') or doc.get('created_at') or now()}",
    }


def provenance_header(doc: dict[str, Any]) -> str:
    """The Markdown block (a bullet list) that opens results.md, from its results.json payload."""
    return "\n".join(f"- {label}: {value}" for label, value in provenance_items(doc).items())


__all__ = ["NOT_RECORDED", "provenance_header", "provenance_items", "synthetic_data"]
