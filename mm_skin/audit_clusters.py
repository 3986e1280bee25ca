"""Duplicate images grouped into clusters, in memory linear in the number of images.

Every candidate link (same bytes, same pixels, perceptual distance within the threshold) is
folded into two union-finds as it streams past: *exact* clusters (bytes or pixels) and *near*
clusters (exact links plus perceptual ones, so a near cluster is a union of exact clusters).
Identical images are linked in a chain, never pairwise, so 3,000 copies of one image cost 2,999
links, not 4.5 million pairs. Each near cluster keeps at most :data:`EXAMPLE_PAIRS` example pairs
(exact ones first, then the closest), which is what audit.json lists and the contact sheet draws.
Near clusters are transitive: A ~ B and B ~ C put A and C in one cluster though they may be
farther apart than the threshold; the example pairs are always direct links.

>>> found = Clusters()
>>> found.link("a", "b", "exact", "bytes", 0); found.link("b", "c", "near", "perceptual", 9)
>>> found.exact.root("a") == found.exact.root("b") != found.exact.root("c"), found.near.root("a") == found.near.root("c")
(True, True)
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable, Iterator

import numpy as np

from mm_skin import image_hashes

#: example pairs kept per near cluster (the rest of its members are listed by id only)
EXAMPLE_PAIRS = 5


@dataclasses.dataclass(frozen=True)
class ImagePair:
    """Two image keys that are duplicates: ``kind`` exact|near, ``match`` bytes|pixels|perceptual."""

    a: str
    b: str
    kind: str
    match: str
    distance: int


def is_against(key: str) -> bool:
    """Whether an image key is an ``--against`` image (``against:NAME/...``)."""
    return key.startswith("against:")


class UnionFind:
    """Disjoint sets of string keys (path halving, union by size)."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}
        self.size: dict[str, int] = {}

    def root(self, key: str) -> str:
        """The representative of ``key``'s set (``key`` itself when never linked)."""
        parent = self.parent
        while parent.get(key, key) != key:
            parent[key] = parent.get(parent[key], parent[key])
            key = parent[key]
        return key

    def union(self, a: str, b: str) -> tuple[str, str] | None:
        """Join the sets of ``a`` and ``b``; ``(kept root, absorbed root)``, or None if already one."""
        self.parent.setdefault(a, a)
        self.parent.setdefault(b, b)
        ra, rb = self.root(a), self.root(b)
        if ra == rb:
            return None
        if self.size.get(ra, 1) < self.size.get(rb, 1):
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.size[ra] = self.size.get(ra, 1) + self.size.pop(rb, 1)
        return ra, rb


def _pair_order(pair: ImagePair) -> tuple:
    return pair.kind != "exact", pair.distance, pair.a, pair.b


class Clusters:
    """The two union-finds and the bounded example pairs of each near cluster."""

    def __init__(self) -> None:
        self.exact = UnionFind()
        self.near = UnionFind()
        self.examples: dict[str, list[ImagePair]] = {}  # near root -> up to EXAMPLE_PAIRS pairs
        self.links = 0

    def link(self, a: str, b: str, kind: str, match: str, distance: int) -> None:
        """Record that ``a`` and ``b`` are duplicates (dataset image first in the example pair)."""
        if a == b:
            return
        self.links += 1
        a, b = sorted((a, b), key=lambda key: (is_against(key), key))
        if kind == "exact":
            self.exact.union(a, b)
        joined = self.near.union(a, b)
        root = self.near.root(a)
        kept = self.examples.pop(joined[1], []) if joined else []
        pairs = self.examples.get(root, []) + kept
        if not (is_against(a) and is_against(b)):
            pairs.append(ImagePair(a, b, kind, match, distance))
        if len(pairs) > EXAMPLE_PAIRS or kept:
            pairs = sorted(set(pairs), key=_pair_order)[:EXAMPLE_PAIRS]
        if pairs:
            self.examples[root] = pairs

    def members(self) -> dict[str, list[str]]:
        """near root -> its keys (linked keys only), sorted."""
        groups: dict[str, list[str]] = defaultdict(list)
        for key in self.near.parent:
            groups[self.near.root(key)].append(key)
        return {root: sorted(keys) for root, keys in groups.items()}

    def pairs(self) -> list[ImagePair]:
        """Every cluster's example pairs (at most :data:`EXAMPLE_PAIRS` each), exact first, then closest."""
        return sorted((p for pairs in self.examples.values() for p in pairs), key=_pair_order)


def _chain(keys: Iterable[str]) -> Iterator[tuple[str, str]]:
    """Consecutive pairs of ``keys``: n - 1 links join n keys into one cluster."""
    previous = None
    for key in keys:
        if previous is not None:
            yield previous, key
        previous = key


def image_clusters(keys_of_sha: dict[str, list[str]], shas_of_pixels: dict[str, list[str]],
                   perceptual_of: dict[str, np.ndarray], threshold: int = image_hashes.NEAR_THRESHOLD) -> Clusters:
    """Clusters of the images: same bytes (``keys_of_sha``), same pixels (``shas_of_pixels``),
    and perceptual hashes of one image per pixel group (``perceptual_of``: sha -> hashes) within ``threshold``."""
    found = Clusters()
    for keys in keys_of_sha.values():
        for a, b in _chain(sorted(keys)):
            found.link(a, b, "exact", "bytes", 0)
    for shas in shas_of_pixels.values():
        for sha_a, sha_b in _chain(shas):
            found.link(keys_of_sha[sha_a][0], keys_of_sha[sha_b][0], "exact", "pixels", 0)
    groups = [shas[0] for shas in shas_of_pixels.values()]
    if groups:
        hashes = np.stack([perceptual_of[sha] for sha in groups])
        for i, j, distance in image_hashes.iter_near_pairs(hashes, threshold):
            found.link(keys_of_sha[groups[i]][0], keys_of_sha[groups[j]][0], "near", "perceptual", distance)
    return found
