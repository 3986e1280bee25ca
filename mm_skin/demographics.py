"""Age and sex of the patient (MM-Skin-D): from caption text, or from age/sex columns.

>>> parse_age_sex("A 45-year-old man with a pearly papule on the nose.")
(45, 'male')
>>> parse_age_column("50 years"), parse_sex_column("F")
(50, 'female')
"""

from __future__ import annotations

import re

_NUMBER_WORDS = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen".split()
    )
}
_NUMBER_WORDS.update({w: 10 * i for i, w in enumerate("_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()) if w != "_"})
_NUM = r"(\d{1,3}|(?:twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety)(?:[\s\-](?:one|two|three|four|five|six|seven|eight|nine))?|" + "|".join(sorted(_NUMBER_WORDS, key=len, reverse=True)) + r")"
_AGE_YEARS = [
    re.compile(_NUM + r"[\s\-]*(?:year|yr)s?[\s\-]*old", re.I),  # 45-year-old, 45 years old
    re.compile(_NUM + r"[\s\-]*(?:year|yr)s?\s+of\s+age", re.I),  # 45 years of age
    re.compile(r"\baged?\s+" + _NUM + r"\b(?!\s*(?:month|week|day))", re.I),  # aged 45, age 45
    re.compile(r"\b" + _NUM + r"[\s\-]*(?:y/o|yo)\b", re.I),  # 45 y/o, 45yo
]
_AGE_UNDER_ONE = re.compile(
    r"\b(?:" + _NUM + r"[\s\-]*(?:month|week|day)s?[\s\-]*old|new[\s\-]?borns?|neonat(?:e|es|al)|infants?|bab(?:y|ies))\b",
    re.I,
)
_MALE = re.compile(r"\b(?:man|boy|male|gentleman|father|son|brother|husband)\b", re.I)
_FEMALE = re.compile(r"\b(?:woman|girl|female|lady|mother|daughter|sister|wife|pregnan(?:t|cy))\b", re.I)
_MALE_PRONOUN = re.compile(r"\b(?:he|his|him)\b", re.I)
_FEMALE_PRONOUN = re.compile(r"\b(?:she|her|hers)\b", re.I)
# "male pattern baldness" is a diagnosis, not the patient's sex
_NOT_SEX = re.compile(r"\b(?:fe)?male[\s\-]+pattern\b", re.I)
MAX_AGE = 120


def _number(token: str) -> int | None:
    token = token.lower().replace("-", " ")
    if token.isdigit():
        return int(token)
    parts = token.split()
    if all(p in _NUMBER_WORDS for p in parts):
        return sum(_NUMBER_WORDS[p] for p in parts)
    return None


def parse_age_sex(text: str) -> tuple[int | None, str | None]:
    """Age (whole years) and sex ("male"/"female") of the patient named in a caption, or None.

    Rules (MM-Skin-D extracts demographics from caption text; these are ours, documented):

    * age: the first of "45-year-old", "45 years old", "45 years of age", "aged 45", "age 45",
      "45 y/o" (digits or words up to ninety-nine; values above 120 are ignored);
      otherwise "N-month/week/day-old", "newborn", "neonate", "infant", "baby" give 0.
      Decades ("in his 40s") and vague words ("child", "elderly") give None.
    * sex: nouns first - man/boy/male/gentleman/father/son/brother/husband -> "male",
      woman/girl/female/lady/mother/daughter/sister/wife/pregnant -> "female"; when no noun is
      present the pronouns he/his/him vs she/her decide. Both sexes named (two patients) -> None.
      Plurals (men/women) are ignored; "male/female pattern" (a diagnosis) is ignored.

    >>> parse_age_sex("Infant girl with a haemangioma.")
    (0, 'female')
    >>> parse_age_sex("Histology of a basal cell carcinoma.")
    (None, None)
    """
    age: int | None = None
    for pattern in _AGE_YEARS:
        m = pattern.search(text)
        if m:
            n = _number(m.group(1))
            if n is not None and n <= MAX_AGE:
                age = n
                break
    if age is None and _AGE_UNDER_ONE.search(text):
        age = 0
    cleaned = _NOT_SEX.sub(" ", text)
    male, female = bool(_MALE.search(cleaned)), bool(_FEMALE.search(cleaned))
    if not male and not female:
        male, female = bool(_MALE_PRONOUN.search(cleaned)), bool(_FEMALE_PRONOUN.search(cleaned))
    sex = "male" if male and not female else "female" if female and not male else None
    return age, sex


def parse_age_column(value: str) -> int | None:
    """An age column's cell ("45", "45.0", "45 years") in whole years; None when unreadable."""
    m = re.match(r"^\s*(\d{1,3})(?:\.0+)?\s*(?:y|yr|yrs|years?)?\s*$", value, re.I)
    if m and int(m.group(1)) <= MAX_AGE:
        return int(m.group(1))
    return None


def parse_sex_column(value: str) -> str | None:
    """A sex/gender column's cell ("M", "female", ...) as "male"/"female"; None when unreadable."""
    v = value.strip().lower()
    if v in {"m", "male", "man", "boy"}:
        return "male"
    if v in {"f", "female", "woman", "girl"}:
        return "female"
    return None
