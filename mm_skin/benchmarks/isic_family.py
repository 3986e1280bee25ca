"""The ISIC-hosted layouts: HAM10000 (Harvard Dataverse) and ISIC 2019 (ISIC Challenge).

HAM10000: ``HAM10000_metadata.csv`` (lesion_id, image_id, dx, dx_type, age, sex,
localization[, dataset]) and ``HAM10000_images_part_1/``, ``_part_2/`` with ``<image_id>.jpg``.
ISIC 2019: ``ISIC_2019_Training_GroundTruth.csv`` (image + one-hot MEL, NV, BCC, AK, BKL, DF,
VASC, SCC, UNK), ``ISIC_2019_Training_Metadata.csv`` (image, age_approx, anatom_site_general,
lesion_id, sex) and ``ISIC_2019_Training_Input/<image>.jpg``. Images are found by name anywhere
under SOURCE, so either part folder (or a flattened copy) works.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from mm_skin.benchmarks.spec import ImageFiles, Row, age, image_row, read_table, sex
from mm_skin.report import BuildReport

#: HAM10000 ``dx`` codes -> class names, spelled as the authors' test file spells them
HAM_CLASSES = {"akiec": "Actinic Keratoses", "bcc": "Basal Cell Carcinoma", "bkl": "Benign Keratosis",
               "df": "Dermatofibroma", "mel": "Melanoma", "nv": "Nevus", "vasc": "Vascular lesions"}
#: ISIC 2019 ground-truth columns -> class names (UNK, "none of the others", is empty in training)
ISIC2019_CLASSES = {"MEL": "Melanoma", "NV": "Nevus", "BCC": "Basal Cell Carcinoma", "AK": "Actinic Keratosis",
                    "BKL": "Benign Keratosis", "DF": "Dermatofibroma", "VASC": "Vascular Lesion",
                    "SCC": "Squamous Cell Carcinoma"}
HAM_METADATA = "HAM10000_metadata.csv"
ISIC2019_TRUTH = "ISIC_2019_Training_GroundTruth.csv"
ISIC2019_METADATA = "ISIC_2019_Training_Metadata.csv"


def read_ham10000(source: Path, report: BuildReport, files: ImageFiles) -> Iterator[Row]:
    """Rows of HAM10000 from ``HAM10000_metadata.csv`` (label set ``dx``)."""
    aliases = {"image_id": ("imageid",), "dx": ("dx",), "lesion_id": ("lesionid",), "age": ("age",),
               "sex": ("sex",), "site": ("localization",), "source": ("dataset",)}
    for rowno, cells in read_table(report, source / HAM_METADATA, HAM_METADATA, aliases, ["image_id", "dx"]):
        dx = cells["dx"].lower()
        if dx not in HAM_CLASSES:
            report.skip(HAM_METADATA, rowno, "dx", cells["dx"], f"unknown dx (expected one of {', '.join(HAM_CLASSES)})")
            continue
        path = image_row(report, HAM_METADATA, rowno, files, cells["image_id"] + ".jpg")
        if path is None:
            continue
        yield Row(path, cells["image_id"], {"dx": HAM_CLASSES[dx]}, HAM_METADATA, rowno, age=age(cells.get("age", "")),
                  sex=sex(cells.get("sex", "")), site=cells.get("site") or None, lesion_id=cells.get("lesion_id") or None,
                  source=cells.get("source") or None)


def _isic2019_metadata(source: Path, report: BuildReport) -> dict[str, dict[str, str]]:
    """image -> metadata cells (empty when the optional metadata file is absent)."""
    if not (source / ISIC2019_METADATA).is_file():
        report.notes.append(f"{ISIC2019_METADATA} not found: no age, sex, site or lesion_id (a seeded split "
                            "then cannot keep a lesion's images together)")
        return {}
    aliases = {"image": ("image",), "age": ("ageapprox", "age"), "site": ("anatomsitegeneral",),
               "lesion_id": ("lesionid",), "sex": ("sex",)}
    return {cells["image"]: cells for _, cells in
            read_table(report, source / ISIC2019_METADATA, ISIC2019_METADATA, aliases, ["image"], role="metadata")}


def read_isic2019(source: Path, report: BuildReport, files: ImageFiles) -> Iterator[Row]:
    """Rows of the ISIC 2019 training set from its one-hot ground truth (label set ``diagnosis``)."""
    meta = _isic2019_metadata(source, report)
    aliases = {"image": ("image",), **{code: (code.lower(),) for code in (*ISIC2019_CLASSES, "UNK")}}
    for rowno, cells in read_table(report, source / ISIC2019_TRUTH, ISIC2019_TRUTH, aliases, ["image", *ISIC2019_CLASSES]):
        hot = [code for code in ISIC2019_CLASSES if _is_one(cells[code])]
        if len(hot) != 1:
            what = "no class marked 1.0 (UNK or blank)" if not hot else f"several classes marked 1.0 ({', '.join(hot)})"
            report.skip(ISIC2019_TRUTH, rowno, "image", cells["image"], what)
            continue
        path = image_row(report, ISIC2019_TRUTH, rowno, files, cells["image"] + ".jpg")
        if path is None:
            continue
        extra = meta.get(cells["image"], {})
        yield Row(path, cells["image"], {"diagnosis": ISIC2019_CLASSES[hot[0]]}, ISIC2019_TRUTH, rowno,
                  age=age(extra.get("age", "")), sex=sex(extra.get("sex", "")), site=extra.get("site") or None,
                  lesion_id=extra.get("lesion_id") or None)


def _is_one(cell: str) -> bool:
    try:
        return float(cell) == 1.0
    except ValueError:
        return False
