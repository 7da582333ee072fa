"""Content digests of index tables, so that a run records exactly which rows it read.

Kept free of heavy imports (no Keras, no MLflow): curation and training both use it.
"""

from __future__ import annotations

import hashlib

import pandas as pd


def table_digest(frame: pd.DataFrame) -> str:
    """A stable sha256 of a table's content (column names, column order and values).

    Hashes a canonical CSV rendering rather than pandas' internal hashing, so that the digest
    does not depend on the row index, dtype backends or the pandas version: one table gives one
    digest in curate and training runs alike.

    Args:
        frame: the table, e.g. ``raw_index``, ``curated_index`` or ``model_input_index``.

    Returns:
        The hex sha256 digest.
    """
    canonical = frame.to_csv(index=False, lineterminator="\n", float_format="%.17g")
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
