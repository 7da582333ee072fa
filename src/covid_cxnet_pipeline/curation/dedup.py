"""Exact and near-duplicate detection: pHash candidates, correlation confirmation, union-find groups.

Work happens on distinct sha256 values (byte-identical files are one node), so exact duplicates
fall into one group for free. Near-duplicate candidates come from a blocked all-pairs Hamming
scan of perceptual hashes (vectorised popcount, memory bounded by the block size); each candidate
is confirmed by the normalised correlation of small border-trimmed thumbnails, which tolerates
re-encoding, resizing and linear contrast changes but separates two follow-up films of one
patient that pHash alone finds close.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

PAIR_COLUMNS = ("sha256_a", "sha256_b", "hamming", "correlation")


@dataclass(frozen=True)
class DedupConfig:
    """Thresholds of the near-duplicate rule; every field is a ``curate.dedup`` parameter.

    A pair of distinct files is a duplicate when ``hamming <= strict_hamming``, or when
    ``hamming <= max_hamming`` and the thumbnail correlation is at least ``min_correlation``.

    Attributes:
        strict_hamming: pHash distance (bits) accepted without further check.
        max_hamming: largest pHash distance (bits) considered at all.
        min_correlation: normalised thumbnail correlation needed between the two thresholds.
        block_size: rows per block of the all-pairs scan (memory ~ block_size x N x 8 bytes).
    """

    strict_hamming: int = 24
    max_hamming: int = 60
    min_correlation: float = 0.83
    block_size: int = 256


class UnionFind:
    """Disjoint sets over hashable items, with path halving and union by size."""

    def __init__(self) -> None:
        self._parent: dict = {}
        self._size: dict = {}

    def add(self, item) -> None:
        """Make ``item`` a set of its own unless it is known already."""
        if item not in self._parent:
            self._parent[item] = item
            self._size[item] = 1

    def find(self, item):
        """The representative of ``item``'s set."""
        self.add(item)
        while self._parent[item] != item:
            self._parent[item] = self._parent[self._parent[item]]
            item = self._parent[item]
        return item

    def union(self, first, second) -> None:
        """Merge the sets of ``first`` and ``second``."""
        root_a, root_b = self.find(first), self.find(second)
        if root_a == root_b:
            return
        if self._size[root_a] < self._size[root_b]:
            root_a, root_b = root_b, root_a
        self._parent[root_b] = root_a
        self._size[root_a] += self._size[root_b]

    def groups(self) -> dict:
        """Mapping item -> representative for every item added."""
        return {item: self.find(item) for item in list(self._parent)}


def hashes_to_words(hex_hashes: list[str]) -> np.ndarray:
    """Pack hex hashes (all of the same length) into a ``(N, words)`` uint64 array.

    Args:
        hex_hashes: hexadecimal hash strings, e.g. from ``imagehash``.

    Returns:
        The hashes as rows of 64-bit words, padded with zero bits to a whole word.
    """
    if not hex_hashes:
        return np.zeros((0, 1), dtype=np.uint64)
    raw = np.array([np.frombuffer(bytes.fromhex(h), dtype=np.uint8) for h in hex_hashes])
    pad = (-raw.shape[1]) % 8
    if pad:
        raw = np.pad(raw, ((0, 0), (0, pad)))
    return raw.view(">u8").astype(np.uint64)


def hamming_pairs(
    words: np.ndarray, max_distance: int, block_size: int = 256
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs ``i < j`` whose Hamming distance is at most ``max_distance``.

    Args:
        words: ``(N, W)`` uint64 packed hashes.
        max_distance: largest distance kept, in bits.
        block_size: rows compared at once; bounds memory to ``block_size * N`` int32 distances.

    Returns:
        Arrays ``i``, ``j`` and ``distance`` of the kept pairs.
    """
    count = len(words)
    found_i, found_j, found_d = [], [], []
    for start in range(0, count, block_size):
        block = words[start : start + block_size]
        later = words[start:]  # pairs with earlier rows were found by earlier blocks
        distance = np.zeros((len(block), len(later)), dtype=np.int32)
        for w in range(words.shape[1]):
            distance += np.bitwise_count(block[:, w, None] ^ later[None, :, w]).astype(np.int32)
        rows, cols = np.nonzero(distance <= max_distance)
        keep = cols > rows
        found_i.append(rows[keep] + start)
        found_j.append(cols[keep] + start)
        found_d.append(distance[rows[keep], cols[keep]])
    if not found_i:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    return np.concatenate(found_i), np.concatenate(found_j), np.concatenate(found_d)


def thumbnail_correlation(first: bytes, second: bytes) -> float:
    """Pearson correlation of two equally sized uint8 thumbnails (NaN if one is constant).

    Args:
        first: raw thumbnail bytes.
        second: raw thumbnail bytes of the same length.

    Returns:
        The correlation in [-1, 1], or NaN.
    """
    a = np.frombuffer(first, dtype=np.uint8).astype(np.float64)
    b = np.frombuffer(second, dtype=np.uint8).astype(np.float64)
    if len(a) == 0 or len(a) != len(b) or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def find_duplicate_pairs(features: pd.DataFrame, config: DedupConfig) -> pd.DataFrame:
    """Confirmed near-duplicate pairs of distinct files.

    Args:
        features: one row per sha256 with ``phash`` and ``thumbnail`` (undecodable rows, with an
            empty ``phash``, are ignored).
        config: the duplicate rule.

    Returns:
        A frame with ``PAIR_COLUMNS``, one row per confirmed pair.
    """
    usable = features[features["phash"].astype(str) != ""].reset_index(drop=True)
    words = hashes_to_words(usable["phash"].astype(str).tolist())
    rows_i, rows_j, distances = hamming_pairs(words, config.max_hamming, config.block_size)
    shas = usable["sha256"].astype(str).to_numpy(dtype=object)
    thumbs = usable["thumbnail"].to_numpy(dtype=object)
    kept = []
    for i, j, distance in zip(rows_i.tolist(), rows_j.tolist(), distances.tolist(), strict=True):
        correlation = thumbnail_correlation(thumbs[i], thumbs[j])
        if distance <= config.strict_hamming or correlation >= config.min_correlation:
            kept.append((shas[i], shas[j], int(distance), correlation))
    logger.info(
        "Near-duplicate scan: %d files, %d pHash candidates, %d confirmed pairs",
        len(usable),
        len(rows_i),
        len(kept),
    )
    return pd.DataFrame(kept, columns=list(PAIR_COLUMNS))


def group_duplicates(index: pd.DataFrame, pairs: pd.DataFrame) -> pd.Series:
    """Duplicate group of every image: exact copies (same sha256) and confirmed pairs, joined.

    Args:
        index: rows with ``image_id`` and ``sha256``.
        pairs: confirmed pairs from :func:`find_duplicate_pairs`.

    Returns:
        A Series aligned with ``index``: the group id, which is the smallest ``image_id`` of the
        group (stable across runs and readable in reports).
    """
    sets = UnionFind()
    for sha in index["sha256"].astype(str):
        sets.add(sha)
    for first, second in zip(pairs["sha256_a"], pairs["sha256_b"], strict=True):
        sets.union(str(first), str(second))
    root = index["sha256"].astype(str).map(sets.find)
    group_id = index["image_id"].astype(str).groupby(root.to_numpy()).transform("min")
    return pd.Series(group_id.to_numpy(), index=index.index, name="duplicate_group")
