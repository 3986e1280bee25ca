"""The clinical-photograph layouts: DDI, Fitzpatrick17k, PAD-UFES-20 and Dermnet.

- DDI: ``ddi_metadata.csv`` (unnamed index, DDI_ID, DDI_file, skin_tone 12/34/56, malignant
  True/False, disease) and the images named by DDI_file anywhere under SOURCE.
- Fitzpatrick17k: ``fitzpatrick17k.csv`` (md5hash, fitzpatrick_scale 1-6 or -1, label,
  nine_partition_label, three_partition_label, ...) and ``<md5hash>.jpg`` anywhere under SOURCE
  (the user downloads them from the url column).
- PAD-UFES-20: ``metadata.csv`` (patient_id, lesion_id, age, gender, fitspatrick [sic], region,
  diagnostic ACK/BCC/MEL/NEV/SCC/SEK, img_id, ...) and ``images/imgs_part_*/<img_id>``.
- Dermnet: ``train/<class>/*`` and ``test/<class>/*``; the folders are the split.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from mm_skin.benchmarks.spec import (
    IMAGE_SUFFIXES,
    ImageFiles,
    Row,
    age,
    image_row,
    read_table,
    sex,
    skin_type,
)
from mm_skin.report import BuildReport, ReleaseError

DDI_METADATA = "ddi_metadata.csv"
DDI_TONES = {"12": "I-II", "34": "III-IV", "56": "V-VI"}
FITZ_METADATA = "fitzpatrick17k.csv"
PAD_METADATA = "metadata.csv"
PAD_CLASSES = {"ACK": "Actinic Keratosis", "BCC": "Basal Cell Carcinoma", "MEL": "Melanoma", "NEV": "Nevus",
               "SCC": "Squamous Cell Carcinoma", "SEK": "Seborrheic Keratosis"}


def read_ddi(source: Path, report: BuildReport, files: ImageFiles) -> Iterator[Row]:
    """Rows of DDI (label sets ``malignancy`` benign/malignant and ``disease``)."""
    aliases = {"file": ("ddifile",), "id": ("ddiid",), "tone": ("skintone",), "malignant": ("malignant",),
               "disease": ("disease",)}
    for rowno, cells in read_table(report, source / DDI_METADATA, DDI_METADATA, aliases, ["file", "malignant"]):
        malignant = cells["malignant"].lower()
        if malignant not in ("true", "false", "1", "0"):
            report.skip(DDI_METADATA, rowno, "malignant", cells["malignant"], "malignant is not True/False")
            continue
        path = image_row(report, DDI_METADATA, rowno, files, cells["file"])
        if path is None:
            continue
        tone = cells.get("tone", "")
        if tone and tone not in DDI_TONES:
            report.warn(DDI_METADATA, rowno, "skin_tone", tone, "skin_tone not 12/34/56: written as unknown")
        yield Row(path, Path(cells["file"]).stem,
                  {"malignancy": "malignant" if malignant in ("true", "1") else "benign",
                   "disease": cells.get("disease") or None},
                  DDI_METADATA, rowno, skin_type=DDI_TONES.get(tone))


def read_fitzpatrick17k(source: Path, report: BuildReport, files: ImageFiles) -> Iterator[Row]:
    """Rows of Fitzpatrick17k (label sets ``three_partition``, ``nine_partition``, ``disease``)."""
    aliases = {"md5": ("md5hash",), "scale": ("fitzpatrickscale", "fitzpatrick"), "disease": ("label",),
               "nine": ("ninepartitionlabel",), "three": ("threepartitionlabel",)}
    for rowno, cells in read_table(report, source / FITZ_METADATA, FITZ_METADATA, aliases, ["md5", "three"]):
        path = image_row(report, FITZ_METADATA, rowno, files, cells["md5"] + ".jpg")
        if path is None:
            continue
        yield Row(path, cells["md5"], {"three_partition": cells["three"] or None, "nine_partition": cells.get("nine") or None,
                                       "disease": cells.get("disease") or None},
                  FITZ_METADATA, rowno, skin_type=skin_type(cells.get("scale", "")))


def read_pad_ufes_20(source: Path, report: BuildReport, files: ImageFiles) -> Iterator[Row]:
    """Rows of PAD-UFES-20 (label set ``diagnostic``)."""
    aliases = {"img_id": ("imgid",), "diagnostic": ("diagnostic",), "patient_id": ("patientid",),
               "lesion_id": ("lesionid",), "age": ("age",), "sex": ("gender",), "tone": ("fitspatrick", "fitzpatrick"),
               "site": ("region",)}
    for rowno, cells in read_table(report, source / PAD_METADATA, PAD_METADATA, aliases, ["img_id", "diagnostic"]):
        code = cells["diagnostic"].upper()
        if code not in PAD_CLASSES:
            report.skip(PAD_METADATA, rowno, "diagnostic", cells["diagnostic"],
                        f"unknown diagnostic (expected one of {', '.join(PAD_CLASSES)})")
            continue
        path = image_row(report, PAD_METADATA, rowno, files, cells["img_id"])
        if path is None:
            continue
        yield Row(path, Path(cells["img_id"]).stem, {"diagnostic": PAD_CLASSES[code]}, PAD_METADATA, rowno,
                  skin_type=skin_type(cells.get("tone", "")), age=age(cells.get("age", "")), sex=sex(cells.get("sex", "")),
                  site=(cells.get("site") or "").lower() or None, lesion_id=cells.get("lesion_id") or None,
                  patient_id=cells.get("patient_id") or None)


def read_dermnet(source: Path, report: BuildReport, files: ImageFiles) -> Iterator[Row]:
    """Rows of Dermnet: one per image file under ``train/<class>/`` and ``test/<class>/``
    (label set ``disease``; the folder is the row's split; image id ``<class>/<file stem>``, as
    one file name occurs in several class folders)."""
    found = False
    for split in ("train", "test"):
        folder = source / split
        if not folder.is_dir():
            continue
        found = True
        root = folder.resolve()
        inside = [p for p in files.all if root in p.parents]
        for path in inside:
            if path.parent.parent == root:
                yield Row(path, f"{path.parent.name}/{path.stem}", {"disease": path.parent.name}, f"{split}/{path.parent.name}/{path.name}", 0,
                          split=split)
        stray = sum(path.parent.parent != root for path in inside)
        if stray:
            report.notes.append(f"{split}/: {stray} image files not directly inside a class folder were not read")
    if not found:
        raise ReleaseError(f"{source}: no train/ or test/ folder; Dermnet's download holds train/<class>/*.jpg "
                           f"and test/<class>/*.jpg (image suffixes {', '.join(sorted(IMAGE_SUFFIXES))})")
