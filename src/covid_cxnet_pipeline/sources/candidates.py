"""Helpers every adapter shares: untrusted upstream names, metadata text files, candidate tables.

Adapters build one dict per image with ``candidate_row`` and turn the list into a table with
``candidate_frame``; both guarantee exactly ``CANDIDATE_COLUMNS`` with stable dtypes.
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import posixpath
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from covid_cxnet_pipeline.sources.base import (
    CANDIDATE_COLUMNS,
    MASK_CANDIDATE_COLUMNS,
    empty_frame,
)
from covid_cxnet_pipeline.sources.protocol import SourceClient

logger = logging.getLogger(__name__)

# File types the ingest decodes (compared case-insensitively). Anything else in an image folder
# (README, .DS_Store, PDFs) is not a chest X-ray.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jfif", ".png", ".webp", ".bmp", ".dcm")

# Text encodings tried in order for upstream CSVs: Figure1's metadata.csv carries Windows-1252
# bytes (a right quote 0x92, a degree sign 0xB0); latin-1 decodes any byte, so it is the last resort.
_ENCODINGS = ("utf-8-sig", "cp1252", "latin-1")


def is_image_path(relpath: str) -> bool:
    """Whether ``relpath`` names a file type the ingest decodes (by extension, any case)."""
    return PurePosixPath(relpath).suffix.lower() in IMAGE_EXTENSIONS


def safe_relpath(relpath: str) -> str | None:
    """``relpath`` normalised to a POSIX path inside the source root, or None when unsafe.

    Upstream names are untrusted: absolute paths, ``..`` components, backslashes (a Windows path
    in disguise) and control characters are refused.

    Args:
        relpath: a path as written in an upstream metadata file or listing.

    Returns:
        The cleaned relative path, or None when it could escape the source root.
    """
    if not relpath or "\\" in relpath or any(ord(ch) < 32 for ch in relpath):
        return None
    if relpath.startswith("/") or PurePosixPath(relpath).is_absolute():
        return None
    parts = [part for part in relpath.split("/") if part not in ("", ".")]
    if not parts or any(part == ".." for part in parts):
        return None
    # A drive letter ("C:") would make the path absolute on Windows.
    if ":" in parts[0]:
        return None
    return posixpath.join(*parts)


def image_files(files: Iterable[str], source_id: str) -> list[str]:
    """The safe image paths among ``files`` (a listing), sorted; logs what was refused.

    Args:
        files: relative paths from ``SourceClient.list_files``.
        source_id: for the log message.

    Returns:
        Sorted, de-duplicated relative paths of image files.
    """
    kept = set()
    for relpath in files:
        cleaned = safe_relpath(relpath)
        if cleaned is None:
            logger.warning("%s: refusing unsafe upstream path %r", source_id, relpath)
        elif is_image_path(cleaned):
            kept.add(cleaned)
    return sorted(kept)


def read_text(path: Path) -> str:
    """Decode a small metadata file: gunzips when gzip-compressed, tries UTF-8 (BOM-aware) first.

    Args:
        path: the cached file from ``SourceClient.fetch_metadata``.

    Returns:
        The decoded text (never raises on odd bytes: latin-1 decodes anything).
    """
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    for encoding in _ENCODINGS:
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError:
            continue
        if encoding != "utf-8-sig":
            logger.info("%s is not UTF-8; decoded as %s", path, encoding)
        return text
    raise AssertionError("unreachable: latin-1 decodes every byte string")


def read_metadata_csv(path: Path) -> pd.DataFrame:
    """Read an upstream CSV as strings: blanks stay "", quoted multi-line cells stay whole.

    Drops the nameless trailing column that a trailing comma in the header creates (ieee8023)
    when it holds nothing, and strips whitespace from the column names.

    Args:
        path: the cached metadata file (CSV, optionally gzip-compressed).

    Returns:
        A table of ``str`` cells, one row per record.
    """
    frame = pd.read_csv(
        io.StringIO(read_text(path)), dtype=str, keep_default_na=False, na_filter=False
    )
    frame.columns = [str(column).strip() for column in frame.columns]
    empty_named = [
        column
        for column in frame.columns
        if (column == "" or column.startswith("Unnamed:"))
        and not (frame[column].str.strip() != "").any()
    ]
    return frame.drop(columns=empty_named)


def require_columns(
    table: pd.DataFrame, required: Iterable[str], *, where: str, kind: str = "", hint: str
) -> None:
    """Refuse an upstream table that lacks any of the columns an adapter reads.

    Args:
        table: the table as read.
        required: the column names it must have.
        where: what the table is, for the message ("<source_id>: <path>").
        kind: the family of columns ("NIH", "ieee8023"), or "" for none.
        hint: what the user should check, after the list of missing columns.

    Raises:
        ValueError: naming ``where``, the missing columns and ``hint``.
    """
    missing = [column for column in required if column not in table.columns]
    if missing:
        family = f"{kind} " if kind else ""
        raise ValueError(f"{where} lacks the {family}columns {missing}; {hint}")


def member_url(archive_url: str, member: str) -> str:
    """The unique URL of an archive member: ``<archive url>#<member>`` (its ledger key)."""
    return f"{archive_url}#{member}"


def candidate_row(
    source_id: str,
    upstream_path: str,
    client: SourceClient,
    *,
    covid_source: str,
    label: str,
    patient_id: str = "",
    age: float = np.nan,
    sex: str = "",
    view: str = "",
    finding: str = "",
    license: str = "",  # noqa: A002 - the schema's column name
    is_pediatric_flag: bool = False,
    flags: Iterable[str] = (),
    local_path: str = "",
    archive_url: str = "",
) -> dict[str, Any]:
    """One candidate image row (``CANDIDATE_COLUMNS``) for a file to download from ``client``.

    Args:
        source_id: the ``ingest.sources`` key.
        upstream_path: the safe relative path inside the upstream layout.
        client: gives the download URL.
        covid_source: one of ``schema.COVID_SOURCES``.
        label: one of ``schema.RAW_LABELS``.
        patient_id, age, sex, view, finding, license: upstream values, already cleaned.
        is_pediatric_flag: the source itself flags the image as pediatric.
        flags: source-specific flags, joined with ";".
        local_path: the extracted file for images inside an archive, else "".
        archive_url: the archive the image came from; the row's ``url`` becomes
            ``member_url(archive_url, upstream_path)`` (needs ``local_path``).

    Returns:
        A dict keyed by ``CANDIDATE_COLUMNS``.

    Raises:
        ValueError: ``archive_url`` without ``local_path`` (an adapter bug).
    """
    if archive_url and not local_path:
        raise ValueError(f"{source_id}: {upstream_path} has an archive_url but no local_path")
    if archive_url:
        url = member_url(archive_url, upstream_path)
    else:
        url = client.url(upstream_path) if not local_path else ""
    return {
        "image_id": f"{source_id}:{upstream_path}",
        "source_id": source_id,
        "covid_source": covid_source,
        "url": url,
        "upstream_path": upstream_path,
        "patient_id": patient_id,
        "age": float(age),
        "sex": sex,
        "view": view,
        "label": label,
        "finding": finding,
        "license": license,
        "is_pediatric_flag": bool(is_pediatric_flag),
        "flags": ";".join(flags),
        "local_path": local_path,
    }


def candidate_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The candidate table with exactly ``CANDIDATE_COLUMNS`` (age float, flag bool, rest str).

    Raises:
        ValueError: two rows share an ``image_id`` (an adapter bug: ids must be unique).
    """
    if not rows:
        frame = empty_frame(CANDIDATE_COLUMNS)
    else:
        frame = pd.DataFrame(rows, columns=list(CANDIDATE_COLUMNS))
    frame = frame.astype({"age": float, "is_pediatric_flag": bool})
    duplicated = frame["image_id"][frame["image_id"].duplicated()]
    if not duplicated.empty:
        raise ValueError(f"duplicate image ids from one adapter: {sorted(duplicated)[:5]}")
    return frame.reset_index(drop=True)


def mask_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The mask candidate table with exactly ``MASK_CANDIDATE_COLUMNS``."""
    if not rows:
        return empty_frame(MASK_CANDIDATE_COLUMNS)
    frame = pd.DataFrame(rows, columns=list(MASK_CANDIDATE_COLUMNS))
    return frame.astype(
        {"offset_top": int, "offset_left": int, "scale_to_image": bool}
    ).reset_index(drop=True)


def setting(config: Mapping[str, Any], source_id: str, key: str) -> Any:
    """A required key of the ``ingest.sources.<source_id>`` block.

    Raises:
        KeyError: the key is absent, naming the parameter to add.
    """
    try:
        return config[key]
    except KeyError:
        raise KeyError(
            f"ingest.sources.{source_id}.{key} is not set: add it to conf/base/parameters_ingest.yml"
        ) from None


def folder(path: str) -> str:
    """A configured folder as a relative prefix ending with "/" ("" for the source root)."""
    cleaned = path.strip().strip("/")
    return f"{cleaned}/" if cleaned else ""


def archive_images(root: Path, folder: str | None = None) -> list[str]:
    """Image files of an extracted archive, as sorted member paths relative to ``root``.

    Symbolic links, hidden files and macOS resource forks (``__MACOSX/``, ``._*``) are skipped:
    archives built on a Mac carry a ``._<name>`` twin of every image.

    Args:
        root: the folder ``SourceClient.fetch_archive`` returned.
        folder: keep only files whose parent directory has this name (e.g. ``"CXR_png"``).

    Returns:
        POSIX member paths such as ``"MontgomerySet/CXR_png/MCUCXR_0001_0.png"``.
    """
    found = []
    for directory, subdirs, files in os.walk(root, followlinks=False):
        subdirs[:] = [d for d in subdirs if not d.startswith((".", "__MACOSX"))]
        if folder is not None and Path(directory).name != folder:
            continue
        for name in files:
            path = Path(directory, name)
            if name.startswith(".") or path.is_symlink() or not path.is_file():
                continue
            member = path.relative_to(root).as_posix()
            if is_image_path(member):
                found.append(member)
    return sorted(found)
