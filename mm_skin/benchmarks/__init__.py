"""Public dermatology classification benchmarks as Hub-ready Parquet folders (``mm-skin benchmark build``).

One module per publisher layout yields :class:`~mm_skin.benchmarks.spec.Row` objects;
:mod:`mm_skin.benchmarks.write` splits and writes them (one config per label set, the paper's
label set the default) with the card stating the publisher's licence. Torch-free.

>>> sorted(BENCHMARKS)[:3]
['bcn20000', 'ddi', 'dermnet']
"""

from __future__ import annotations

from mm_skin.benchmarks.clinical import (
    PAD_CLASSES,
    read_ddi,
    read_dermnet,
    read_fitzpatrick17k,
    read_pad_ufes_20,
)
from mm_skin.benchmarks.isic_family import (
    HAM_CLASSES,
    ISIC2019_CLASSES,
    read_ham10000,
    read_isic2019,
)
from mm_skin.benchmarks.spec import Benchmark

_ISIC_TERMS = ("CC BY-NC 4.0 (Creative Commons Attribution-NonCommercial 4.0): attribute the ISIC Archive and "
               "the contributing collection; no commercial use.")
_ARCHIVE = ("An ISIC Archive collection: each image carries the licence the Archive states for it (mostly "
            "CC BY-NC 4.0 or CC-0); check the Archive's metadata for yours before sharing.")
_AUTHORS_LAYOUT = "a folder of the images the authors' label file names (given with --test-file)"


def _archive(name: str, title: str, url: str) -> Benchmark:
    return Benchmark(name, title, "other", _ARCHIVE, True, url, {"label": None}, "label", None,
                     layout=_AUTHORS_LAYOUT)


BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in (
    Benchmark("ham10000", "HAM10000", "cc-by-nc-4.0", _ISIC_TERMS, False,
              "https://doi.org/10.7910/DVN/DBW86T", {"dx": list(HAM_CLASSES.values())}, "dx", read_ham10000,
              group="lesion_id", layout="HAM10000_metadata.csv + HAM10000_images_part_1/, HAM10000_images_part_2/"),
    Benchmark("isic2019", "ISIC 2019", "cc-by-nc-4.0", _ISIC_TERMS, False,
              "https://challenge.isic-archive.com/data/#2019", {"diagnosis": list(ISIC2019_CLASSES.values())},
              "diagnosis", read_isic2019, group="lesion_id",
              layout="ISIC_2019_Training_GroundTruth.csv [+ ISIC_2019_Training_Metadata.csv] + ISIC_2019_Training_Input/"),
    Benchmark("ddi", "Diverse Dermatology Images (DDI)", "other",
              "Stanford AIMI research-use agreement: non-commercial research only, no redistribution; every user "
              "must accept the agreement at the Stanford AIMI site.", True,
              "https://stanfordaimi.azurewebsites.net/datasets/35866158-8196-48d8-87bf-50dca81df965",
              {"malignancy": ["benign", "malignant"], "disease": None}, "malignancy", read_ddi,
              layout="ddi_metadata.csv + the images it names"),
    Benchmark("fitzpatrick17k", "Fitzpatrick17k", "cc-by-nc-sa-3.0",
              "CC BY-NC-SA 3.0: attribution, non-commercial, share alike; the images stay under their source "
              "atlases' terms.", True, "https://github.com/mattgroh/fitzpatrick17k",
              {"three_partition": None, "nine_partition": None, "disease": None}, "three_partition",
              read_fitzpatrick17k, layout="fitzpatrick17k.csv + <md5hash>.jpg anywhere below"),
    Benchmark("pad-ufes-20", "PAD-UFES-20", "cc-by-4.0", "CC BY 4.0 (Mendeley Data): attribution.", False,
              "https://doi.org/10.17632/zr7vgbcyr2.1", {"diagnostic": list(PAD_CLASSES.values())}, "diagnostic", read_pad_ufes_20,
              group="patient_id", layout="metadata.csv + images/imgs_part_*/"),
    Benchmark("dermnet", "Dermnet (Kaggle copy of DermNet NZ)", "other",
              "No licence stated by the Kaggle uploader; the images belong to DermNet NZ, whose terms forbid "
              "redistribution without permission.", True, "https://www.kaggle.com/datasets/shubhamgoel27/dermnet",
              {"disease": None}, "disease", read_dermnet, layout="train/<class>/*.jpg + test/<class>/*.jpg"),
    _archive("hiba", "HIBA (Hospital Italiano de Buenos Aires)", "https://api.isic-archive.com/collections/"),
    _archive("bcn20000", "BCN20000", "https://api.isic-archive.com/collections/"),
    _archive("mskcc", "MSKCC", "https://api.isic-archive.com/collections/"),
    Benchmark("patch16", "PATCH16", "other", "Terms as stated by the publisher of your copy; none are bundled here.",
              True, "", {"label": None}, "label", None, layout=_AUTHORS_LAYOUT),
)}

__all__ = ["BENCHMARKS", "Benchmark"]
