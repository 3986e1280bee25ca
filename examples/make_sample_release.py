"""Write examples/mm-skin-sample: a tiny SYNTHETIC release in the MM-Skin authors' layout.

    python examples/make_sample_release.py [--out examples/mm-skin-sample]

Layout (as the authors ship it; docs/dataset.md)::

    MM-SkinQA/caption.csv            image, cleaned_caption, modality
    MM-SkinQA/VQA.csv                image, question, answer
    MM-SkinQA/dataset/bk{N}_*.png    the figures
    Dataframe/test/vqa/MM-Skin-sample_test.csv   in the official test split's format (image,
                                     question, answer); named apart from the authors' MM-Skin_test.csv
                                     so it is never mistaken for the real file (the builder finds it)
    Dataframe/Pretrain/vqa_MM.json   LLaVA instruction format (the `instruct` config)

The images are drawn here with a fixed seed (clinical: a lesion on skin; dermoscopy: a pigment
network in a round field; pathology: nuclei on an eosin-pink background); the captions and QA
pairs were written for this sample. Nothing comes from the textbooks. Modality strings: `skin`
is what the release uses for clinical photos; the release's strings for the other two are not
known, so the sample uses `dermoscopy` and `pathology` (both recognised aliases).
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import shutil
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

from mm_skin.schema import SYNTHETIC_MARKER

SEED = 20250509
HERE = Path(__file__).resolve().parent

# (file stem, modality string, caption, [(question, answer), ...])
IMAGES: list[tuple[str, str, str, list[tuple[str, str]]]] = [
    # --- clinical photographs ("skin") ---
    ("bk3_c5_8", "skin", "A 62-year-old man with a pearly, telangiectatic papule on the nasal ala: nodular basal cell carcinoma.",
     [("What is the most likely diagnosis?", "Nodular basal cell carcinoma."),
      ("Where is the lesion located?", "The lesion is on the side of the nose (nasal ala).")]),
    ("bk3_c5_12", "skin", "Superficial spreading melanoma on the back of a 45-year-old woman, with irregular borders and variegated brown-black colour.",
     [("What features suggest malignancy?", "Asymmetry, irregular borders and several shades of brown and black."),
      ("What is the diagnosis?", "Superficial spreading melanoma.")]),
    ("bk3_c18_12", "skin", "Flat, sharply demarcated erythematous plaques with silvery scale on the elbows of a 30-year-old man with chronic plaque psoriasis.",
     [("Is the lesion raised above the skin surface?", "Yes, the plaques are slightly raised and covered by silvery scale."),
      ("Which condition is shown?", "Chronic plaque psoriasis.")]),
    ("bk3_c21_3", "skin", "Annular lesion with a scaly advancing edge and central clearing on the thigh: tinea corporis.",
     [("What is the typical configuration of this lesion?", "Annular, with an active scaly border and central clearing."),
      ("What kind of organism causes it?", "A dermatophyte fungus.")]),
    ("bk5_630", "skin", "Digital mucous cyst: a translucent dome-shaped nodule on the dorsal distal finger of a 70-year-old woman.",
     [("What does the image show?", "A dome-shaped translucent cyst on the back of a finger, near the nail."),
      ("Where is this lesion usually found?", "Over the distal interphalangeal joint or proximal nail fold of a finger.")]),
    ("bk5_711", "skin", "Vesicles grouped on an erythematous base along a thoracic dermatome in herpes zoster.",
     [("What is the distribution of the vesicles?", "They follow one thoracic dermatome on one side of the body."),
      ("Which virus causes this eruption?", "Varicella-zoster virus.")]),
    ("bk8_14_2", "skin", "Seborrheic keratosis on the temple of an 80-year-old man: a waxy, stuck-on brown plaque.",
     [("Is this lesion benign or malignant?", "It is benign."),
      ("What is the characteristic appearance?", "A waxy, well-circumscribed brown plaque that looks stuck on to the skin.")]),
    ("bk8_31_7", "skin", "Urticarial wheals on the trunk of a woman after penicillin exposure.",
     [("What type of lesion is shown?", "Transient, itchy wheals (hives)."),
      ("What may have triggered the eruption?", "Exposure to penicillin, a drug allergy.")]),
    ("bk11_4_2", "skin", "Infantile haemangioma: a bright red lobulated plaque on the scalp of a 4-month-old girl.",
     [("What is the diagnosis?", "Infantile haemangioma."),
      ("How does this lesion usually evolve?", "It grows in the first months of life and then slowly involutes over years.")]),
    ("bk11_9_5", "skin", "Atopic dermatitis with lichenified plaques in the antecubital fossae of a 6-year-old boy.",
     [("Which skin sites are involved?", "The flexural skin of the antecubital fossae."),
      ("What is the diagnosis?", "Atopic dermatitis.")]),
    ("bk15_402", "skin", "Acute paronychia: painful swelling and erythema of the proximal nail fold of the thumb.",
     [("Where is the lesion located on the body?", "On the proximal nail fold of the thumb."),
      ("What is the usual cause?", "A bacterial infection, most often Staphylococcus aureus.")]),
    ("bk15_77_3", "skin", "Vitiligo: depigmented, sharply bordered macules on the hands of a 28-year-old woman.",
     [("What colour change is present?", "Complete loss of pigment with sharp borders."),
      ("Is the skin surface scaly?", "No, the macules are smooth and not scaly.")]),
    # --- dermoscopy ---
    ("bk1_3_12", "dermoscopy", "Dermoscopy of a benign compound naevus showing a regular pigment network and symmetric globules.",
     [("What dermoscopic structures are visible?", "A regular pigment network and symmetric brown globules."),
      ("Is this pattern reassuring?", "Yes, a symmetric regular network suggests a benign naevus.")]),
    ("bk1_5_4", "dermoscopy", "Dermoscopy of melanoma: atypical network, irregular streaks and a blue-white veil.",
     [("Which feature is most worrying?", "The blue-white veil together with irregular streaks."),
      ("What is the likely diagnosis?", "Melanoma.")]),
    ("bk1_7_20", "dermoscopy", "Seborrheic keratosis under dermoscopy with milia-like cysts and comedo-like openings.",
     [("What are the white dots called?", "Milia-like cysts."),
      ("What is the diagnosis?", "Seborrheic keratosis.")]),
    ("bk1_9_2", "dermoscopy", "Arborizing vessels and blue-grey ovoid nests in a pigmented basal cell carcinoma.",
     [("What vascular pattern is seen?", "Arborizing, tree-like vessels."),
      ("Which tumour shows these features?", "Pigmented basal cell carcinoma.")]),
    ("bk1_12_6", "dermoscopy", "Dermatofibroma: central white scar-like patch surrounded by a delicate peripheral network.",
     [("What is the typical dermoscopic pattern?", "A central white patch with a fine peripheral pigment network."),
      ("Is the lesion benign?", "Yes, a dermatofibroma is benign.")]),
    ("bk6_2_15", "dermoscopy", "Haemangioma under dermoscopy with red lacunae separated by whitish septa.",
     [("What are the red round structures?", "Red lacunae, dilated vascular spaces."),
      ("What is the diagnosis?", "A haemangioma.")]),
    ("bk6_8_3", "dermoscopy", "Acral naevus with a parallel furrow pattern on the sole of a 12-year-old girl.",
     [("Which acral pattern is shown?", "The parallel furrow pattern."),
      ("Does this pattern suggest melanoma?", "No, pigment in the furrows is typical of a benign acral naevus.")]),
    ("bk14_6_1", "dermoscopy", "Dermoscopy of actinic keratosis showing a strawberry pattern of erythema around follicular openings.",
     [("What is this pattern called?", "The strawberry pattern."),
      ("What causes this lesion?", "Chronic ultraviolet damage of the skin.")]),
    ("bk14_6_9", "dermoscopy", "Lentigo maligna on the cheek: asymmetric pigmented follicular openings and rhomboidal structures.",
     [("Which site is typical for this lesion?", "Sun-damaged facial skin such as the cheek."),
      ("What is the diagnosis?", "Lentigo maligna.")]),
    # --- pathology ---
    ("bk10_17_87", "pathology", "Nodular basal cell carcinoma: islands of basaloid cells with peripheral palisading and retraction clefts (H&E).",
     [("What is the arrangement of the tumour cells?", "Basaloid islands with palisaded nuclei at the periphery."),
      ("What are the artefactual spaces around the islands?", "Retraction clefts between the tumour and the stroma.")]),
    ("bk10_30_26", "pathology", "Metastatic carcinoma of breast: cords of tumour cells dispersed in a dense fibrous dermal stroma.",
     [("What type of tissue is present in this image?", "Dermis infiltrated by cords of metastatic breast carcinoma cells."),
      ("Is this a primary skin tumour?", "No, it is a metastasis from a breast carcinoma.")]),
    ("bk10_4_11", "pathology", "Psoriasis histology: regular acanthosis, confluent parakeratosis and neutrophils in the stratum corneum.",
     [("What change is seen in the epidermis?", "Regular elongation of the rete ridges (psoriasiform acanthosis)."),
      ("Which cells collect in the stratum corneum?", "Neutrophils, forming Munro microabscesses.")]),
    ("bk10_22_5", "pathology", "Squamous cell carcinoma with atypical keratinocytes and keratin pearls invading the dermis.",
     [("What are the round eosinophilic whorls?", "Keratin pearls."),
      ("What is the diagnosis?", "Invasive squamous cell carcinoma.")]),
    ("bk10_9_40", "pathology", "Lichen planus: band-like lymphocytic infiltrate hugging the dermo-epidermal junction with saw-tooth rete ridges.",
     [("Where is the inflammatory infiltrate?", "In a band along the dermo-epidermal junction."),
      ("What shape are the rete ridges?", "Saw-tooth shaped.")]),
    ("bk2_1_99_c", "pathology", "Mycosis fungoides: atypical lymphocytes with cerebriform nuclei colonising the epidermis (Pautrier microabscesses).",
     [("What are the intraepidermal clusters of lymphocytes called?", "Pautrier microabscesses."),
      ("Which lymphoma is this?", "Mycosis fungoides, a cutaneous T-cell lymphoma.")]),
    ("bk2_3_14", "pathology", "Primary cutaneous follicle centre lymphoma: nodular dermal infiltrate of centrocytes and centroblasts.",
     [("What is the pattern of the infiltrate?", "Nodular, within the dermis."),
      ("Which cell types predominate?", "Centrocytes and centroblasts of follicle centre origin.")]),
    ("bk14_12_4", "pathology", "Melanoma in situ: atypical melanocytes in pagetoid spread through the epidermis.",
     [("What is pagetoid spread?", "Single atypical melanocytes scattered upward through all layers of the epidermis."),
      ("Has the tumour invaded the dermis?", "No, it is confined to the epidermis (in situ).")]),
    ("bk8_20_6", "pathology", "Spongiotic dermatitis: intercellular oedema of the epidermis with a sparse perivascular infiltrate.",
     [("What is spongiosis?", "Oedema between epidermal keratinocytes."),
      ("Which clinical disease often shows this pattern?", "Eczema (allergic contact or atopic dermatitis).")]),
]

# Official-format test rows: (stem, index of the QA pair). Includes several modalities and
# an image with both of its QA pairs in the test split.
TEST_ROWS = [("bk5_630", 0), ("bk3_c18_12", 0), ("bk10_30_26", 0), ("bk15_402", 0), ("bk1_5_4", 0), ("bk1_5_4", 1),
             ("bk6_2_15", 0), ("bk10_4_11", 1), ("bk2_1_99_c", 0), ("bk11_4_2", 1), ("bk14_6_9", 0), ("bk8_20_6", 1)]

# LLaVA instruction records (Dataframe/Pretrain/vqa_MM.json), marker before or after the text.
INSTRUCT = [
    {"id": "mm-0", "image": "dataset/bk3_c5_8.png", "conversations": [
        {"from": "human", "value": "<image>\nDescribe the lesion."},
        {"from": "gpt", "value": "A pearly papule with telangiectasia on the nasal ala, typical of nodular basal cell carcinoma."}]},
    {"id": "mm-1", "image": "dataset/bk1_3_12.png", "conversations": [
        {"from": "human", "value": "What dermoscopic structures are visible?\n<image>"},
        {"from": "gpt", "value": "A regular pigment network and symmetric brown globules."},
        {"from": "human", "value": "Is it benign?"},
        {"from": "gpt", "value": "Yes, the pattern is that of a benign compound naevus."}]},
    {"id": "mm-2", "image": "dataset/bk10_17_87.png", "conversations": [
        {"from": "human", "value": "<image>\nWhat is the diagnosis?"},
        {"from": "gpt", "value": "Nodular basal cell carcinoma."}]},
    {"id": "mm-3", "image": "dataset/bk11_9_5.png", "conversations": [
        {"from": "human", "value": "<image>\nWhich sites are involved?"},
        {"from": "gpt", "value": "The antecubital fossae."}]},
    {"id": "mm-4", "image": "dataset/bk2_3_14.png", "conversations": [
        {"from": "human", "value": "<image>\nWhat is the pattern of the infiltrate?"},
        {"from": "gpt", "value": "A nodular dermal infiltrate of centrocytes and centroblasts."}]},
    {"id": "mm-5", "image": "dataset/bk6_8_3.png", "conversations": [
        {"from": "human", "value": "<image>\nWhich acral pattern is shown?"},
        {"from": "gpt", "value": "The parallel furrow pattern of a benign acral naevus."}]},
]

SKIN_TONES = [(241, 194, 167), (224, 172, 138), (198, 134, 103), (141, 85, 60), (250, 214, 190)]


def _jitter(rng: random.Random, c: tuple[int, int, int], amount: int) -> tuple[int, int, int]:
    r, g, b = (max(0, min(255, v + rng.randint(-amount, amount))) for v in c)
    return (r, g, b)


def draw(modality: str, rng: random.Random) -> Image.Image:
    """A small picture that looks roughly like the modality (for demos, not for learning)."""
    w, h = rng.choice([(48, 40), (48, 48), (56, 44), (40, 48)])
    if modality == "skin":
        base = rng.choice(SKIN_TONES)
        img = Image.new("RGB", (w, h), base)
        d = ImageDraw.Draw(img)
        for _ in range(rng.randint(1, 3)):
            cx, cy, rx, ry = rng.randint(10, w - 10), rng.randint(10, h - 10), rng.randint(4, 12), rng.randint(4, 12)
            d.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=_jitter(rng, (150, 60, 50), 40))
    elif modality == "dermoscopy":
        img = Image.new("RGB", (w, h), (20, 16, 14))
        d = ImageDraw.Draw(img)
        r = min(w, h) // 2 - 1
        d.ellipse([w // 2 - r, h // 2 - r, w // 2 + r, h // 2 + r], fill=_jitter(rng, (214, 160, 130), 15))
        for _ in range(rng.randint(25, 45)):
            x, y = rng.randint(w // 2 - r // 2, w // 2 + r // 2), rng.randint(h // 2 - r // 2, h // 2 + r // 2)
            s = rng.randint(1, 3)
            d.ellipse([x - s, y - s, x + s, y + s], fill=_jitter(rng, (95, 55, 35), 25))
    else:  # pathology: H&E-like pink stroma with purple nuclei
        img = Image.new("RGB", (w, h), _jitter(rng, (232, 170, 200), 10))
        d = ImageDraw.Draw(img)
        for _ in range(rng.randint(40, 80)):
            x, y, s = rng.randint(0, w), rng.randint(0, h), rng.randint(1, 2)
            d.ellipse([x - s, y - s, x + s, y + s], fill=_jitter(rng, (90, 50, 140), 25))
    return img.filter(ImageFilter.SMOOTH)


SAMPLE_DESCRIPTION = (
    "the synthetic MM-Skin sample of the mm-skin project (examples/mm-skin-sample, written by "
    "examples/make_sample_release.py): drawn shapes with hand-written captions and QA pairs"
)


def make_sample_release(out: Path, seed: int = SEED) -> Path:
    """(Re)write the sample release under ``out``; return ``out``."""
    rng = random.Random(seed)
    if out.exists():
        shutil.rmtree(out)
    qa_root = out / "MM-SkinQA"
    (qa_root / "dataset").mkdir(parents=True)
    for stem, modality, _, _ in IMAGES:
        draw(modality, rng).save(qa_root / "dataset" / f"{stem}.png", optimize=True)
    with open(qa_root / "caption.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["image", "cleaned_caption", "modality"])
        for stem, modality, caption, _ in IMAGES:
            w.writerow([f"dataset/{stem}.png", caption, modality])
    with open(qa_root / "VQA.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["image", "question", "answer"])
        for stem, _, _, qa in IMAGES:
            for q, a in qa:
                w.writerow([f"dataset/{stem}.png", q, a])
    by_stem = {stem: qa for stem, _, _, qa in IMAGES}
    test = out / "Dataframe" / "test" / "vqa"
    test.mkdir(parents=True)
    with open(test / "MM-Skin-sample_test.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["image", "question", "answer"])
        for stem, i in TEST_ROWS:
            w.writerow([f"dataset/{stem}.png", *by_stem[stem][i]])
    pretrain = out / "Dataframe" / "Pretrain"
    pretrain.mkdir(parents=True)
    (pretrain / "vqa_MM.json").write_text(json.dumps(INSTRUCT, indent=1) + "\n", encoding="utf-8")
    # the builder reads this marker: the card and report then say the data is synthetic
    marker = {"synthetic": True, "description": SAMPLE_DESCRIPTION}
    (out / SYNTHETIC_MARKER).write_text(json.dumps(marker, indent=1) + "\n", encoding="utf-8")
    (out / "README.md").write_text(
        "# MM-Skin sample release (synthetic)\n\n"
        "A tiny stand-in for the MM-Skin release in the authors' layout, written by\n"
        "`examples/make_sample_release.py` (fixed seed). The images are drawn shapes and the\n"
        "captions / QA pairs were written for this sample: nothing here comes from the textbooks.\n"
        "Modality strings: `skin` (as in the real release), `dermoscopy` and `pathology` (the real\n"
        "release's strings for these two are not known). The test split is\n"
        "`Dataframe/test/vqa/MM-Skin-sample_test.csv`, in the format of the authors' `MM-Skin_test.csv`\n"
        "but named apart from it; the builder uses the only `*_test.csv` there when the official name\n"
        "is absent.\n\n"
        f"`{SYNTHETIC_MARKER}` marks the folder as synthetic: the dataset card and build report of a\n"
        "build from it say so instead of describing textbook data and an official test split.\n\n"
        "Build it: `mm-skin build examples/mm-skin-sample --out mm-skin`\n",
        encoding="utf-8",
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "mm-skin-sample")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    print(make_sample_release(args.out, args.seed))


if __name__ == "__main__":
    main()
