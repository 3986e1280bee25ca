"""What ``mm-skin audit`` writes: audit.json, audit.md, the contact sheet, and the card section.

:func:`render_card_section` is also what ``mm-skin build --audit`` puts on the dataset card
("Duplicates and overlap"), rendered from the same ``summary`` audit.json holds.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont, ImageOps

from mm_skin.untrusted import card_code, card_text

CONTACT_SHEET = "near_duplicates.png"
CONTACT_PAIRS = 16  # closest near-duplicate pairs shown
_TILE = 240  # pixels per image on the sheet
_LISTED_PAIRS = 50  # image pairs listed in audit.md (all of them are in audit.json)
_LISTED_TEXTS = 5  # examples per text field in audit.md
_INLINE_IDS = 100  # exact-twin ids written into the card's filter snippet; more: see audit.json


def _row(cells: list[Any]) -> str:
    return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    return [_row(header), _row(["---"] * len(header)), *(_row(row) for row in rows)]


def render_card_section(summary: dict[str, Any] | None, repo_id: str = "<namespace>/mm-skin") -> str:
    """The card's "Duplicates and overlap" section (markdown) from an audit ``summary``.

    ``summary`` None: the build ran no audit; the section says so and names the command.
    ``repo_id`` is what the section's snippet passes to ``load_dataset``.

    >>> print(render_card_section({"splits": {}, "against": {}}).splitlines()[0])
    ## Duplicates and overlap
    >>> "not audited" in render_card_section(None)
    True
    """
    lines = ["## Duplicates and overlap", ""]
    if summary is None:
        return "\n".join(lines + [
            "This build was not audited. `mm-skin audit FOLDER_OR_REPO_ID --out audit` finds exact and "
            "near-duplicate images and texts and counts the test images and QA pairs that have a twin "
            "in train (audit.json, audit.md and a contact sheet in `audit/`); "
            "`mm-skin build RELEASE --out mm-skin --audit` puts those numbers here. MM-Skin's official "
            "split is by QA pair, not by image, so a test image can also have (other) QA pairs in train.",
            ""] + _leak_free(repo_id, []))
    lines += ["Counted by `mm-skin audit` (exact: same bytes or same pixels; near: perceptual hashes "
              "robust to resizing, re-compression, small crops and colour shifts). MM-Skin's official "
              "split is by QA pair, not by image, so a test image can also have (other) QA pairs in train.", ""]
    for name, split in summary.get("splits", {}).items():
        lines += _split_tables(name, split)
    for name, folder in summary.get("against", {}).items():
        twins = ", ".join(f"{counts['exact']} exact / {counts['near']} near in {split}"
                          for split, counts in folder["twin_in_split"].items())
        twins = card_text(twins)  # split names come from the folder
        lines += [f"- `{card_code(name)}` ({folder['images']} images): images with a twin: {twins}."]
    if summary.get("against"):
        lines += [""]
    exact, near = (sorted({key for split in summary.get("splits", {}).values()
                           for key in split.get("train_twins_of_test", {}).get(kind, [])})
                   for kind in ("exact", "near"))
    lines += _leak_free(repo_id, exact)
    if near:
        lines += [f"Train images that are near twins of test images under another id: {len(near)}. They are "
                  f"candidates to judge by eye on the audit's `{CONTACT_SHEET}`, not verdicts (perceptual hashes "
                  "also pair distinct figures that share a layout, e.g. dermoscopy's dark round field of view).", ""]
    lines += ["`mm-skin audit` on this dataset writes every pair to `audit.json` (the test ids with a "
              "twin in train: `summary.splits.*.test_image_ids_in_train`; the train ids that are their "
              "twins: `summary.splits.*.train_twins_of_test`).", ""]
    return "\n".join(lines)


def _split_tables(name: str, split: dict[str, Any]) -> list[str]:
    """The images table and the QA pairs table of one split pair (e.g. ``test vs train``)."""
    images, qa = split["images"], split["qa_pairs"]
    return [f"**{card_text(name)}** images:", ""] + _table(
        ["test images", "same image id in train", "exact twin in train", "near twin in train", "any of these"],
        [[images["test"], images["same_image_id"], images["exact_twin"], images["near_twin"], images["any_twin"]]],
    ) + ["", f"**{card_text(name)}** QA pairs:", ""] + _table(
        ["test QA pairs", "image in train", "same question on the same or a twin image in train",
         "same question+answer text in train", "near question+answer text in train"],
        [[qa["test"], qa["image_in_train"], qa["same_question_on_same_or_twin_image"], qa["same_qa_text"],
          qa["near_qa_text"]]],
    ) + [""]


def _leak_free(repo_id: str, exact_twins: list[str]) -> list[str]:
    """How to get the training set without the test images: the ``image_in_test`` filter, plus
    the train images that are exact twins of test images under another id when they are few."""
    inline = 0 < len(exact_twins) <= _INLINE_IDS
    lines = [("A training set without the test images (by image id) and their exact twins under other ids:"
              if inline else "A training set without the test images (by image id) is one filter away:"),
             "", "```python", "from datasets import load_dataset", "",
             f'train = load_dataset({json.dumps(repo_id)}, "vqa", split="train")  # the Hub repo id, or the built folder']
    if not inline:
        lines += ['train = train.filter(lambda row: not row["image_in_test"])', "```", ""]
        if exact_twins:
            lines += ["Train images that are exact twins of test images under another id (same bytes or "
                      f"pixels): {len(exact_twins)}; drop them too (their ids are in `audit.json`, below).", ""]
        return lines
    ids = ", ".join(json.dumps(key) for key in exact_twins)  # a valid Python string literal
    return lines + [f"exact_twins = {{{ids}}}  # train images with the same bytes or pixels as a test image",
                    'train = train.filter(lambda row: not row["image_in_test"] and row["image_id"] not in exact_twins)',
                    "```", ""]


def _side(side: dict[str, Any]) -> str:
    return f"`{card_code(side['image_id'])}` ({card_text(', '.join(side['in']))})"


def render_markdown(report: dict[str, Any]) -> str:
    """audit.md: what was read, the overlap summary, image pairs, text duplicates, errors."""
    pairs = report["image_pairs"]
    lines = [f"# Audit of `{card_code(report['dataset'])}`", "", "Rows read:", ""]
    lines += _table(["config/split", "rows"], [[label, n] for label, n in sorted(report["rows"].items())])
    lines += ["", f"{report['images']['ids']} image ids, {report['images']['distinct_contents']} distinct "
              f"image contents. Thresholds: {json.dumps(report['thresholds'])}.", ""]
    lines += render_card_section(report["summary"], report["dataset"]).splitlines()
    clusters = report["image_clusters"]
    lines += ["", "## Duplicate image clusters", "",
              f"{len(clusters)} clusters of exact or near-duplicate images "
              f"({sum(c['size'] for c in clusters)} images); the largest:", ""]
    lines += _table(["kind", "images", "first members"],
                    [[c["kind"], c["size"], ", ".join(_side(m) for m in c["images"][:3])]
                     for c in clusters[:_LISTED_PAIRS]])
    counts = Counter((pair["kind"], pair["match"]) for pair in pairs)
    lines += ["", "## Example image pairs (a few per cluster)", ""] + _table(
        ["kind", "match", "pairs"], [[kind, match, n] for (kind, match), n in sorted(counts.items())])
    lines += ["", f"First {min(len(pairs), _LISTED_PAIRS)} of {len(pairs)} (all in audit.json); "
              f"the closest near pairs are drawn in `{CONTACT_SHEET}`.", ""]
    lines += _table(["kind", "match", "distance", "image a", "image b"],
                    [[p["kind"], p["match"], p["distance"], _side(p["a"]), _side(p["b"])]
                     for p in pairs[:_LISTED_PAIRS]])
    lines += ["", "## Duplicate texts", ""]
    for field, found in report["texts"].items():
        groups, near = found["exact_groups"], found["near_pairs"]
        lines += [f"**{field}**: {len(groups)} texts occur in 2+ rows ({sum(g['rows'] for g in groups)} "
                  f"rows); {len(near)} near pairs.", ""]
        lines += [f"- {g['rows']} rows: \"{card_text(g['text'][:120])}\"" for g in groups[:_LISTED_TEXTS]]
        lines += [f"- near ({p['jaccard']}): \"{card_text(p['a'][:80])}\" ~ \"{card_text(p['b'][:80])}\""
                  for p in near[:_LISTED_TEXTS]]
        lines += [""]
    for folder in report["summary"]["against"].values():
        lines += [f"`--against {card_code(folder['folder'])}`: {folder['images']} images read, "
                  f"{folder.get('same_image_id', 0)} with an image id of the dataset; skipped: "
                  f"{folder['skipped'] or 'nothing'}.", ""]
    conflicts = report.get("label_conflicts") or []
    lines += ["## Label conflicts", "", f"{len(conflicts)} images (by id or exact twin) carry two different "
              "labels" + (":" if conflicts else "."), ""]
    lines += [f"- {c['scope']}: " + "; ".join(f"`{card_code(m['image_id'])}` {card_text(m['config'])} = {card_text(repr(m['label']))}"
                                          for m in c["images"][:4])
              for c in conflicts[:_LISTED_TEXTS]]
    lines += [""] if conflicts else []
    if report["errors"] or report["conflicts"]:
        lines += ["## Images not audited", ""]
        lines += [f"- `{e['image_id']}` ({', '.join(e['in'])}): {e['error']}" for e in report["errors"]]
        lines += [f"- `{c['image_id']}` in {c['in']} has other bytes than elsewhere" for c in report["conflicts"]]
    return "\n".join(lines) + "\n"


def _tile(data: bytes | None) -> Image.Image:
    tile = Image.new("RGB", (_TILE, _TILE), "white")
    if data is not None:
        with Image.open(io.BytesIO(data)) as image:
            thumbnail = ImageOps.contain(image.convert("RGB"), (_TILE, _TILE))
        tile.paste(thumbnail, ((_TILE - thumbnail.width) // 2, (_TILE - thumbnail.height) // 2))
    return tile


def contact_sheet(pairs: list[tuple[str, str, int]], images: dict[str, bytes]) -> Image.Image:
    """The near-duplicate pairs side by side, one pair a row, captioned with ids and distance."""
    font = ImageFont.load_default()
    caption, gap = 28, 8
    width = 2 * _TILE + 3 * gap
    height = len(pairs) * (_TILE + caption + gap) + gap if pairs else 4 * gap
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    if not pairs:
        draw.text((gap, gap), "no near-duplicate image pairs", fill="black", font=font)
    for index, (a, b, distance) in enumerate(pairs):
        top = gap + index * (_TILE + caption + gap)
        sheet.paste(_tile(images.get(a)), (gap, top))
        sheet.paste(_tile(images.get(b)), (2 * gap + _TILE, top))
        draw.text((gap, top + _TILE + 2), f"{a}  ~  {b}"[:80], fill="black", font=font)
        draw.text((gap, top + _TILE + 14), f"distance {distance} of 128 bits", fill="black", font=font)
    return sheet


def write_outputs(out: Path, report: dict[str, Any], fetch: Callable[[set[str]], dict[str, bytes]],
                  near: list[tuple[str, str, int]]) -> None:
    """Write audit.json, audit.md and the contact sheet of the closest ``near`` pairs into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "audit.json").write_text(json.dumps(report, indent=1, ensure_ascii=False), encoding="utf-8")
    (out / "audit.md").write_text(render_markdown(report), encoding="utf-8")
    closest = sorted(near, key=lambda pair: pair[2])[:CONTACT_PAIRS]
    images = fetch({key for a, b, _ in closest for key in (a, b)}) if closest else {}
    contact_sheet(closest, images).save(out / CONTACT_SHEET)
