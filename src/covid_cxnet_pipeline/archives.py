"""Safe, cached extraction of zip and tar(.gz) archives from untrusted upstreams.

Member names are untrusted: absolute paths, ``..`` components, links and special files are
refused (zip-slip, tar symlink tricks), and the total uncompressed size is capped while bytes are
written, not only from headers that may lie. Extraction goes to a temporary folder renamed into
place, so a folder named after the archive's sha256 exists only once complete.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import lzma
import os
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from tqdm.auto import tqdm

from covid_cxnet_pipeline.download import byte_bar, sha256_file, write_atomically

logger = logging.getLogger(__name__)

_COPY_CHUNK = 1 << 20


class ArchiveError(ValueError):
    """The file is not a readable archive, or it is refused as unsafe or too large."""


# What reading a damaged archive or writing its members can raise besides ``ArchiveError``.
_EXTRACTION_ERRORS = (
    zlib.error,
    OSError,
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    tarfile.TarError,
    EOFError,
    lzma.LZMAError,
    NotImplementedError,
)


def _reason(error: BaseException) -> str:
    """The error's text without the temporary extraction path an ``OSError`` carries."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


def extract_archive(
    archive: str | os.PathLike,
    dest_root: str | os.PathLike,
    *,
    max_total_bytes: int,
    max_members: int = 1_000_000,
    progress: bool = False,
) -> Path:
    """Extract a zip or tar(.gz/.bz2/.xz) archive safely into ``dest_root/<sha256>``.

    A second call for the same archive content returns the existing folder without reading it:
    the archive's digest is remembered in ``dest_root/.digests/`` with its size and mtime, so a
    re-run does not hash 42 GB of NIH archives again (a changed file is hashed anew).

    Args:
        archive: the archive file.
        dest_root: folder holding one extracted folder per archive digest.
        max_total_bytes: refuse archives whose members add up to more bytes than this.
        max_members: refuse archives with more members than this.
        progress: show a tqdm bar of the bytes extracted.

    Returns:
        The folder holding the archive's files.

    Raises:
        ArchiveError: unreadable archive, unsafe member (absolute path, ``..``, link, device),
            or over the size/member limits. No extracted folder is left in ``dest_root`` then.
    """
    archive = Path(archive)
    dest_root = Path(dest_root)
    digest = archive_digest(archive, dest_root / ".digests")
    target = dest_root / digest
    if target.is_dir():
        logger.debug("archive %s already extracted in %s", archive.name, target)
        return target
    dest_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{digest[:16]}.", suffix=".part", dir=dest_root))
    try:
        try:
            with byte_bar(None, f"extract {archive.name}", progress) as bar:
                budget = _Budget(archive, max_total_bytes, max_members, bar)
                if zipfile.is_zipfile(archive):
                    _extract_zip(archive, tmp, budget)
                elif _is_tar(archive):
                    _extract_tar(archive, tmp, budget)
                else:
                    raise ArchiveError(f"{archive.name}: not a zip or tar archive")
        except _EXTRACTION_ERRORS as error:
            # Whatever a damaged or odd archive raises becomes one error naming it, which the
            # source client reports as an unavailable archive instead of crashing the run.
            raise ArchiveError(f"{archive.name}: cannot extract: {_reason(error)}") from None
        try:
            os.replace(tmp, target)
        except OSError:
            # Another process finished the same archive first: keep its folder.
            if not target.is_dir():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("extracted %s into %s", archive.name, target)
    return target


def archive_digest(archive: str | os.PathLike, digests_dir: str | os.PathLike) -> str:
    """The sha256 of ``archive``, hashed once per (path, size, mtime) and remembered.

    Args:
        archive: the archive file.
        digests_dir: folder of the remembered digests (one small JSON file per archive path).

    Returns:
        The hex sha256 of the archive's content.
    """
    archive = Path(archive).resolve()
    info = archive.stat()
    key = hashlib.sha256(str(archive).encode("utf-8")).hexdigest()[:32]
    sidecar = Path(digests_dir) / f"{key}.json"
    try:
        known = json.loads(sidecar.read_text(encoding="utf-8"))
        if (
            known["path"] == str(archive)
            and known["size"] == info.st_size
            and known["mtime_ns"] == info.st_mtime_ns
            and re.fullmatch(r"[0-9a-f]{64}", known["sha256"])
        ):
            return known["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        pass  # absent, torn or stale: hash the file
    digest = sha256_file(archive)
    record = {"path": str(archive), "size": info.st_size, "mtime_ns": info.st_mtime_ns}
    write_atomically(sidecar, json.dumps(record | {"sha256": digest}).encode("utf-8"))
    return digest


def safe_member_path(name: str) -> PurePosixPath:
    """The relative path an archive member may be written to.

    Args:
        name: the member name as stored in the archive (untrusted).

    Returns:
        A relative POSIX path without ``.``/``..`` components.

    Raises:
        ArchiveError: absolute path, drive letter, ``..`` component, NUL byte or empty name.
    """
    if "\x00" in name:
        raise ArchiveError(f"member name with a NUL byte: {name!r}")
    # Some Windows tools write backslashes; treat them as separators rather than file names.
    normalised = name.replace("\\", "/")
    if normalised.startswith("/") or (len(normalised) > 1 and normalised[1] == ":"):
        raise ArchiveError(f"absolute member path refused: {name!r}")
    parts = [part for part in normalised.split("/") if part not in ("", ".")]
    if any(part == ".." for part in parts):
        raise ArchiveError(f"member path with '..' refused: {name!r}")
    if not parts:
        raise ArchiveError(f"empty member name: {name!r}")
    return PurePosixPath(*parts)


def _is_tar(archive: Path) -> bool:
    try:
        return tarfile.is_tarfile(archive)
    except OSError:
        return False


class _Budget:
    """Counts bytes written and members seen against the limits."""

    def __init__(self, archive: Path, max_total_bytes: int, max_members: int, bar: tqdm):
        self.archive = archive
        self.bar = bar
        self.max_total_bytes = max_total_bytes
        self.max_members = max_members
        self.bytes = 0
        self.members = 0

    def member(self) -> None:
        self.members += 1
        if self.members > self.max_members:
            raise ArchiveError(f"{self.archive.name}: more than {self.max_members} members")

    def declare(self, total: int, *, final: bool = False) -> None:
        if final:  # zip headers give the total up front: the bar can show a percentage
            self.bar.total = total
            self.bar.refresh()
        if total > self.max_total_bytes:
            raise ArchiveError(
                f"{self.archive.name}: {total} bytes uncompressed is over the limit of "
                f"{self.max_total_bytes} (download.max_archive_bytes)"
            )

    def add(self, count: int) -> None:
        self.bytes += count
        self.bar.update(count)
        if self.bytes > self.max_total_bytes:
            raise ArchiveError(
                f"{self.archive.name}: uncompressed content exceeds "
                f"{self.max_total_bytes} bytes (download.max_archive_bytes)"
            )


def _write_member(source: BinaryIO, root: Path, relpath: PurePosixPath, budget: _Budget) -> None:
    target = root.joinpath(*relpath.parts)
    # Defence in depth: the resolved target must stay inside root.
    if not target.resolve().is_relative_to(root.resolve()):
        raise ArchiveError(f"member escapes the extraction folder: {relpath}")
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_dir():
        raise ArchiveError(f"member {relpath} collides with a folder of the same name")
    with open(target, "wb") as out:
        for chunk in iter(lambda: source.read(_COPY_CHUNK), b""):
            budget.add(len(chunk))
            out.write(chunk)


def _extract_zip(archive: Path, root: Path, budget: _Budget) -> None:
    try:
        with zipfile.ZipFile(archive) as bundle:
            infos = bundle.infolist()
            budget.declare(sum(info.file_size for info in infos), final=True)
            for info in infos:
                budget.member()
                relpath = safe_member_path(info.filename)
                # Unix zips keep the file type in the high bits; 0 means "not recorded".
                file_type = stat.S_IFMT(info.external_attr >> 16)
                if file_type and file_type not in (stat.S_IFREG, stat.S_IFDIR):
                    raise ArchiveError(f"link or special file refused: {info.filename!r}")
                if info.is_dir():
                    root.joinpath(*relpath.parts).mkdir(parents=True, exist_ok=True)
                    continue
                try:
                    with bundle.open(info) as source:
                        _write_member(source, root, relpath, budget)
                except _EXTRACTION_ERRORS as error:
                    raise ArchiveError(
                        f"{archive.name}: member {info.filename!r} cannot be extracted: "
                        f"{_reason(error)}"
                    ) from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError) as error:
        raise ArchiveError(f"{archive.name}: unreadable zip: {error}") from None


def _tar_members(bundle: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    # Iterating streams the headers, so huge archives are not listed in memory up front.
    member = bundle.next()
    while member is not None:
        yield member
        member = bundle.next()


def _extract_tar(archive: Path, root: Path, budget: _Budget) -> None:
    try:
        with tarfile.open(archive, mode="r:*") as bundle:
            for member in _tar_members(bundle):
                budget.member()
                relpath = safe_member_path(member.name)
                if member.isdir():
                    root.joinpath(*relpath.parts).mkdir(parents=True, exist_ok=True)
                    continue
                if not member.isfile():
                    kind = "link" if member.issym() or member.islnk() else "special file"
                    raise ArchiveError(f"{kind} refused: {member.name!r}")
                budget.declare(budget.bytes + member.size)
                source = bundle.extractfile(member)
                if source is None:
                    raise ArchiveError(f"unreadable member: {member.name!r}")
                try:
                    with source:
                        _write_member(source, root, relpath, budget)
                except _EXTRACTION_ERRORS as error:
                    raise ArchiveError(
                        f"{archive.name}: member {member.name!r} cannot be extracted: "
                        f"{_reason(error)}"
                    ) from None
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError) as error:
        raise ArchiveError(f"{archive.name}: unreadable tar: {error}") from None
