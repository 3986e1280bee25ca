"""Small stand-ins of the benchmarks' official downloads, written by the tests (never real images):
the publishers' file and column names, tiny generated JPEG/PNG images."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from PIL import Image


def image_bytes(seed: int, fmt: str = "JPEG") -> bytes:
    """A distinct 16x16 image (a different colour and pattern per seed)."""
    img = Image.new("RGB", (16, 16), ((seed * 37) % 256, (seed * 91) % 256, (seed * 53) % 256))
    for x in range(seed % 16):
        img.putpixel((x, (seed * 7) % 16), (255 - x * 9, x * 13 % 256, 0))
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def ham10000(root: Path, n: int = 20) -> Path:
    """HAM10000_metadata.csv + images in two part folders; two images per lesion."""
    dx = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
    rows = []
    for i in range(n):
        image_id = f"ISIC_{24306 + i:07d}"
        part = root / ("HAM10000_images_part_1" if i % 2 else "HAM10000_images_part_2")
        part.mkdir(parents=True, exist_ok=True)
        (part / f"{image_id}.jpg").write_bytes(image_bytes(i))
        rows.append([f"HAM_{i // 2:07d}", image_id, dx[(i // 2) % 7], "histo", 30 + i, "male" if i % 3 else "female",
                     "back", "vidir_modern"])
    write_csv(root / "HAM10000_metadata.csv",
              ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization", "dataset"], rows)
    return root


def isic2019(root: Path, ham_ids: tuple[tuple[str, bytes], ...] = (), n: int = 12) -> Path:
    """ISIC_2019 ground truth (one-hot) + metadata + ISIC_2019_Training_Input/; ``ham_ids`` are
    HAM10000 images copied in under the same ids (as the real ISIC 2019 contains HAM10000)."""
    codes = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]
    images = root / "ISIC_2019_Training_Input"
    images.mkdir(parents=True, exist_ok=True)
    truth, meta = [], []
    ids = [f"ISIC_{i:07d}" for i in range(n)]
    for k, image_id in enumerate(ids):
        (images / f"{image_id}.jpg").write_bytes(image_bytes(100 + k))
    for ham_id, data in ham_ids:
        (images / f"{ham_id}.jpg").write_bytes(data)
        ids.append(ham_id)
    for k, image_id in enumerate(ids):
        hot = [1.0 if j == k % 8 else 0.0 for j in range(9)]
        truth.append([image_id, *hot])
        meta.append([image_id, 40 + k, "anterior torso", f"IL_{k // 2:07d}", "female"])
    write_csv(root / "ISIC_2019_Training_GroundTruth.csv", ["image", *codes], truth)
    write_csv(root / "ISIC_2019_Training_Metadata.csv", ["image", "age_approx", "anatom_site_general", "lesion_id", "sex"], meta)
    return root


def ddi(root: Path, n: int = 12) -> Path:
    """ddi_metadata.csv (unnamed index column) + images."""
    rows = []
    tones = ["12", "34", "56"]
    for i in range(n):
        name = f"{i + 1:06d}.png"
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "images" / name).write_bytes(image_bytes(200 + i, "PNG"))
        rows.append([i, i + 1, name, tones[i % 3], "True" if i % 4 == 0 else "False",
                     "melanoma-in-situ" if i % 4 == 0 else "seborrheic-keratosis"])
    write_csv(root / "ddi_metadata.csv", ["", "DDI_ID", "DDI_file", "skin_tone", "malignant", "disease"], rows)
    return root


def fitzpatrick17k(root: Path, n: int = 12) -> Path:
    rows = []
    three = ["benign", "malignant", "non-neoplastic"]
    for i in range(n):
        md5 = f"{i:032x}"
        (root / "data" / "finalfitz17k").mkdir(parents=True, exist_ok=True)
        (root / "data" / "finalfitz17k" / f"{md5}.jpg").write_bytes(image_bytes(300 + i))
        rows.append([md5, (i % 7) or -1, (i % 6) + 1, f"disease {i % 4}", f"partition {i % 5}", three[i % 3],
                     "1 Diagnostic", f"http://example.invalid/{i}.jpg", "x"])
    write_csv(root / "fitzpatrick17k.csv", ["md5hash", "fitzpatrick_scale", "fitzpatrick_centaur", "label",
                                            "nine_partition_label", "three_partition_label", "qc", "url",
                                            "url_alphanum"], rows)
    return root


def pad_ufes_20(root: Path, n: int = 12) -> Path:
    rows = []
    dx = ["ACK", "BCC", "MEL", "NEV", "SCC", "SEK"]
    for i in range(n):
        img = f"PAT_{i // 3}_{i}_{i * 7}.png"
        part = root / "images" / f"imgs_part_{i % 3 + 1}"
        part.mkdir(parents=True, exist_ok=True)
        (part / img).write_bytes(image_bytes(400 + i, "PNG"))
        rows.append([f"PAT_{i // 3}", i, 50 + i, "FEMALE" if i % 2 else "MALE", float(i % 6 + 1) if i % 5 else "",
                     "FACE", dx[i % 6], img, "True"])
    write_csv(root / "metadata.csv", ["patient_id", "lesion_id", "age", "gender", "fitspatrick", "region",
                                      "diagnostic", "img_id", "biopsed"], rows)
    return root


def dermnet(root: Path) -> Path:
    for split, n in (("train", 4), ("test", 2)):
        for c, name in enumerate(["Acne and Rosacea Photos", "Eczema Photos"]):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                (folder / f"{split}-{c}-{i}.jpg").write_bytes(image_bytes(500 + c * 10 + i + (50 if split == "test" else 0)))
    return root


def authors_test_file(path: Path, rows: list[tuple[str, str]]) -> Path:
    """The authors' family: ``image,atributes,categories`` with a list literal."""
    return write_csv(path, ["image", "atributes", "categories"], [[image, "[]", repr([label])] for image, label in rows])
