"""Duplicate and near-duplicate texts (questions, answers, question-answer pairs, captions).

Texts are compared after :func:`normalise_text` (Unicode NFKC, case-folded, punctuation and runs
of spaces collapsed), so "Is it benign?" and "is it  benign ?" are the same text. Exact duplicates
are groups of rows sharing a normalised text. Near duplicates are pairs of *different* normalised
texts whose character 5-gram sets have a Jaccard similarity >= ``NEAR_JACCARD``: datasketch's
MinHash LSH proposes candidates (no all-pairs loop), and each candidate is confirmed on the exact
5-gram sets, so a pair reported is never a hashing accident.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections import defaultdict
from typing import Any

NEAR_JACCARD = 0.7  # character 5-gram Jaccard at or above which two texts are near duplicates
SHINGLE = 5  # characters per shingle
NUM_PERM = 64  # MinHash permutations: enough for a 0.7 threshold, cheap to compute
_PUNCTUATION = re.compile(r"[^\w\s]+")
_SPACES = re.compile(r"\s+")


def normalise_text(text: str) -> str:
    """The text compared for duplicates.

    >>> normalise_text("  Is it  BENIGN? ")
    'is it benign'
    """
    text = unicodedata.normalize("NFKC", text).casefold()
    return _SPACES.sub(" ", _PUNCTUATION.sub(" ", text)).strip()


def shingles(text: str) -> set[str]:
    """Character 5-grams of a normalised text (the whole text if shorter)."""
    if len(text) <= SHINGLE:
        return {text}
    return {text[i:i + SHINGLE] for i in range(len(text) - SHINGLE + 1)}


@dataclasses.dataclass
class TextIndex:
    """Normalised texts of one field (e.g. "question") and the rows they occur in."""

    field: str
    rows: dict[str, list[Any]] = dataclasses.field(default_factory=lambda: defaultdict(list))

    def add(self, text: str, where: Any) -> str:
        """Record that row ``where`` has ``text``; returns the normalised text (its key)."""
        key = normalise_text(text)
        if key:
            self.rows[key].append(where)
        return key

    def exact_groups(self) -> list[tuple[str, list[Any]]]:
        """(normalised text, rows) for each text found in two or more rows, most rows first."""
        groups = [(text, rows) for text, rows in self.rows.items() if len(rows) > 1]
        return sorted(groups, key=lambda group: (-len(group[1]), group[0]))

    def near_pairs(self, threshold: float = NEAR_JACCARD) -> list[tuple[str, str, float]]:
        """(text a, text b, Jaccard) for different texts with 5-gram Jaccard >= ``threshold``."""
        # here, not at module level: datasketch pulls in scipy (~1 s), and every `mm-skin`
        # command imports this module through mm_skin.audit's options
        from datasketch import MinHash, MinHashLSH

        texts = sorted(self.rows)
        sets = [shingles(text) for text in texts]
        hashes = MinHash.bulk([[s.encode() for s in grams] for grams in sets], num_perm=NUM_PERM)
        lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
        pairs = []
        for index, minhash in enumerate(hashes):
            for other in lsh.query(minhash):
                jaccard = len(sets[index] & sets[other]) / len(sets[index] | sets[other])
                if jaccard >= threshold:
                    pairs.append((texts[other], texts[index], round(jaccard, 3)))
            lsh.insert(index, minhash)
        return sorted(pairs, key=lambda pair: (-pair[2], pair[0], pair[1]))
