"""Robust HTTP downloads into a content-addressed image store, with a resumable URL ledger.

Every byte that reaches the store went through ``download_file``: streamed to a temporary file
beside its destination, checked against Content-Length, size and sha256, then renamed atomically,
so a crash or a bad network never leaves a partial file where a complete one is expected.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path

import requests
from PIL import Image
from requests.adapters import HTTPAdapter
from tqdm.auto import tqdm
from urllib3.util.retry import Retry

logger = logging.getLogger(__name__)

_CHUNK_BYTES = 1 << 16
_RETRY_STATUSES = (429, 500, 502, 503, 504)
# Extensions are taken from untrusted upstream names: only short alphanumeric ones survive.
_SAFE_EXTENSION = re.compile(r"^\.[a-z0-9]{1,10}$")


class DownloadError(RuntimeError):
    """A file could not be downloaded or failed verification.

    Attributes:
        url: what was requested.
        reason: short human reason ("HTTP 404", "timeout", "truncated: got X of Y bytes"...).
        bytes_transferred: body bytes received before the failure.
    """

    def __init__(self, url: str, reason: str, bytes_transferred: int = 0):
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason
        self.bytes_transferred = bytes_transferred


class ImageDecodeError(ValueError):
    """A downloaded file is not a decodable image (or is a decompression bomb)."""


@dataclass(frozen=True)
class DownloadResult:
    """A completed, verified download.

    Attributes:
        path: the destination file (complete).
        bytes_transferred: bytes received over the network (decoded body).
        sha256: hex digest of the file.
        size: file size in bytes.
    """

    path: Path
    bytes_transferred: int
    sha256: str
    size: int


def make_session(
    *,
    retries: int = 5,
    backoff_factor: float = 0.5,
    backoff_max: float = 60.0,
    retry_after_max: int = 300,
    status_forcelist: Sequence[int] = _RETRY_STATUSES,
    pool_maxsize: int = 16,
    user_agent: str = "covid-cxnet-pipeline",
) -> requests.Session:
    """A requests session that retries connection errors, 429 and 5xx with exponential back-off.

    Args:
        retries: retries per request (connection, read-before-headers and status retries).
        backoff_factor: sleep ``backoff_factor * 2**(n-1)`` seconds before retry ``n``.
        backoff_max: longest back-off sleep in seconds.
        retry_after_max: longest ``Retry-After`` header the session honours, in seconds.
        status_forcelist: HTTP statuses that are retried.
        pool_maxsize: connections kept per host (match the number of download workers).
        user_agent: the User-Agent header.

    Returns:
        The configured session. After the retries run out, the last response is returned as is,
        so callers see "HTTP 503" rather than an opaque retry error.
    """
    retry = Retry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        backoff_factor=backoff_factor,
        backoff_max=backoff_max,
        retry_after_max=retry_after_max,
        status_forcelist=tuple(status_forcelist),
        allowed_methods=frozenset({"GET", "HEAD"}),
        raise_on_status=False,
        respect_retry_after_header=True,
    )
    adapter = HTTPAdapter(max_retries=retry, pool_connections=4, pool_maxsize=pool_maxsize)
    session = requests.Session()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = user_agent
    return session


def session_from_params(download_params: dict) -> requests.Session:
    """Build the session from the ``download`` parameters block.

    Args:
        download_params: ``params:download`` (keys ``retries``, ``backoff_factor``,
            ``backoff_max_s``, ``retry_after_max_s``, ``retry_statuses``, ``workers``).

    Returns:
        The configured session.
    """
    return make_session(
        retries=int(download_params.get("retries", 5)),
        backoff_factor=float(download_params.get("backoff_factor", 0.5)),
        backoff_max=float(download_params.get("backoff_max_s", 60.0)),
        retry_after_max=int(download_params.get("retry_after_max_s", 300)),
        status_forcelist=tuple(download_params.get("retry_statuses", _RETRY_STATUSES)),
        pool_maxsize=max(4, int(download_params.get("workers", 8))),
    )


def timeout_from_params(download_params: dict) -> tuple[float, float]:
    """The ``(connect, read)`` timeout in seconds from the ``download`` parameters block."""
    return (
        float(download_params.get("connect_timeout_s", 10.0)),
        float(download_params.get("read_timeout_s", 60.0)),
    )


def download_file(
    url: str,
    dest: str | os.PathLike,
    *,
    session: requests.Session | None = None,
    timeout: tuple[float, float] = (10.0, 60.0),
    expected_sha256: str | None = None,
    expected_size: int | None = None,
    max_bytes: int | None = None,
    progress: bool = False,
    description: str | None = None,
) -> DownloadResult:
    """Stream ``url`` to ``dest`` atomically, verifying length, size and checksum.

    The body goes to a temporary file in ``dest``'s folder, which is renamed onto ``dest`` only
    once complete and verified; on any failure it is deleted and ``dest`` is left untouched.

    Args:
        url: what to download.
        dest: the file to create or replace.
        session: a session from ``make_session`` (a default one is made when None).
        timeout: ``(connect, read)`` timeouts in seconds; read is the longest silence allowed.
        expected_sha256: hex digest the file must have.
        expected_size: size in bytes the file must have.
        max_bytes: refuse bodies larger than this.
        progress: show a tqdm byte progress bar (for big single files such as archives).
        description: the progress bar's label (``dest``'s name by default).

    Returns:
        The completed download.

    Raises:
        DownloadError: HTTP error status, timeout, connection failure, truncated body, size or
            checksum mismatch, or a body over ``max_bytes``.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    session = session or make_session()
    digest = hashlib.sha256()
    received = 0
    declared: int | None = None
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name[:40]}.", suffix=".part", dir=dest.parent)
    tmp_path = Path(tmp_name)
    bar: tqdm | None = None
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with session.get(url, stream=True, timeout=timeout) as response:
                    if response.status_code >= 400:
                        raise DownloadError(url, f"HTTP {response.status_code}")
                    declared = _declared_length(response)
                    if max_bytes is not None and declared is not None and declared > max_bytes:
                        raise DownloadError(url, f"too large: {declared} bytes > {max_bytes}")
                    bar = byte_bar(declared, description or dest.name, progress)
                    for chunk in response.iter_content(_CHUNK_BYTES):
                        received += len(chunk)
                        bar.update(len(chunk))
                        if max_bytes is not None and received > max_bytes:
                            raise DownloadError(url, f"too large: more than {max_bytes} bytes")
                        digest.update(chunk)
                        out.write(chunk)
            except requests.exceptions.Timeout:
                raise DownloadError(url, "timeout") from None
            except requests.exceptions.ChunkedEncodingError as error:
                # urllib3 2 refuses a body shorter than its Content-Length mid-stream.
                if declared is not None:
                    got = max(received, _bytes_read_before(error))
                    raise DownloadError(
                        url, f"truncated: got {got} of {declared} bytes", bytes_transferred=got
                    ) from error
                raise DownloadError(
                    url, f"truncated: connection broken after {received} bytes"
                ) from error
            except requests.exceptions.ConnectionError as error:
                if "timed out" in str(error).lower():
                    raise DownloadError(url, "timeout") from None
                raise DownloadError(url, f"connection error: {_short(error)}") from None
            except requests.exceptions.RequestException as error:
                raise DownloadError(url, f"request failed: {_short(error)}") from None
            out.flush()
            os.fsync(out.fileno())
        if declared is not None and received != declared:
            raise DownloadError(url, f"truncated: got {received} of {declared} bytes")
        sha256 = digest.hexdigest()
        if expected_size is not None and received != expected_size:
            raise DownloadError(
                url, f"size mismatch: got {received} bytes, expected {expected_size}"
            )
        if expected_sha256 is not None and sha256 != expected_sha256.lower():
            raise DownloadError(url, f"sha256 mismatch: got {sha256}, expected {expected_sha256}")
        os.replace(tmp_path, dest)
    except BaseException as error:
        tmp_path.unlink(missing_ok=True)
        if isinstance(error, DownloadError) and not error.bytes_transferred:
            error.bytes_transferred = received
        raise
    finally:
        if bar is not None:
            bar.close()
    return DownloadResult(path=dest, bytes_transferred=received, sha256=sha256, size=received)


def byte_bar(total: int | None, description: str, enabled: bool) -> tqdm:
    """A tqdm bar counting bytes (a disabled one when ``enabled`` is false)."""
    return tqdm(
        total=total,
        desc=description,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        disable=not enabled,
        leave=False,
    )


def _declared_length(response: requests.Response) -> int | None:
    """Content-Length of the decoded body, or None when it does not describe it."""
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    length = response.headers.get("Content-Length")
    if encoding not in ("", "identity") or length is None:
        return None
    try:
        return int(length)
    except ValueError:
        return None


def _bytes_read_before(error: BaseException) -> int:
    """How many body bytes urllib3 had read when it found the body short (0 if unknown)."""
    pending: list[object] = [error]
    while pending:
        item = pending.pop()
        partial = getattr(item, "partial", None)
        if isinstance(partial, int) and not isinstance(partial, bool):
            return partial
        if isinstance(item, BaseException):
            pending.extend(item.args)
            if item.__context__ is not None:
                pending.append(item.__context__)
    return 0


def _without_path(error: BaseException, path: Path) -> str:
    """The error's text without ``path``: a staging file name tells the report's reader nothing
    (the report has the URL) and exposes the machine's folders."""
    quoted = rf"""\s*(['"]?){re.escape(str(path))}\1"""
    return _short(re.sub(quoted, "", str(error)).strip() or type(error).__name__)


def _short(error: BaseException | str, limit: int = 200) -> str:
    text = str(error)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file renamed into place.

    Readers see the old file or the complete new one, never a torn one; the parent folder is
    created when missing.

    Args:
        path: the file to (re)write.
        data: its whole content.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def store_extension(name: str) -> str:
    """The lower-cased extension of an upstream file name, or "" when it is not a safe one.

    Args:
        name: an upstream file name or path (untrusted).

    Returns:
        For example ``".png"`` for ``"374.PNG"``; ``""`` for names without a short alphanumeric
        extension.
    """
    suffix = Path(name.replace("\\", "/").rsplit("/", 1)[-1]).suffix.lower()
    return suffix if _SAFE_EXTENSION.match(suffix) else ""


class ImageStore:
    """Files stored once, named by content: ``<root>/<sha256[:2]>/<sha256><ext>``."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def path_for(self, sha256: str, ext: str) -> Path:
        """Where the file with this digest and extension lives (whether or not it exists)."""
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        if ext and not _SAFE_EXTENSION.match(ext):
            raise ValueError(f"unsafe file extension for the image store: {ext!r}")
        return self.root / sha256[:2] / f"{sha256}{ext}"

    def contains(self, sha256: str, ext: str, size: int | None = None) -> bool:
        """Whether the file is stored (and has ``size`` bytes when given)."""
        path = self.path_for(sha256, ext)
        try:
            return path.is_file() and (size is None or path.stat().st_size == size)
        except OSError:
            return False

    def put(
        self,
        source: str | os.PathLike,
        ext: str,
        *,
        sha256: str | None = None,
        move: bool = False,
        link: bool = False,
    ) -> Path:
        """Store a file under its content hash; idempotent and atomic.

        Args:
            source: the file to store.
            ext: extension to store it with (see ``store_extension``).
            sha256: its digest when already known (computed otherwise).
            move: move ``source`` into the store (it is deleted if already stored) instead of
                copying it.
            link: hard-link ``source`` into the store when both are on one file system (it
                stays where it is, and no byte is copied); copy otherwise. For files in a cache
                we own, such as archive extractions, that later runs read again.

        Returns:
            The stored path.
        """
        source = Path(source)
        sha256 = sha256 or sha256_file(source)
        target = self.path_for(sha256, ext)
        if target.is_file() and target.stat().st_size == source.stat().st_size:
            if move:
                source.unlink(missing_ok=True)
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        if move and _same_device(source, target.parent):
            os.replace(source, target)
            return target
        if link and not move and _link_into(source, target):
            return target
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{sha256[:16]}.", suffix=".part", dir=target.parent
        )
        os.close(fd)
        try:
            shutil.copyfile(source, tmp_name)
            os.replace(tmp_name, target)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        if move:
            source.unlink(missing_ok=True)
        return target

    def iter_files(self) -> Iterator[Path]:
        """Every stored file, in sorted order."""
        if not self.root.is_dir():
            return
        for folder in sorted(self.root.iterdir()):
            if folder.is_dir() and re.fullmatch(r"[0-9a-f]{2}", folder.name):
                for path in sorted(folder.iterdir()):
                    if path.is_file() and not path.name.startswith("."):
                        yield path

    @property
    def staging_dir(self) -> Path:
        """Where downloads land before they are verified and moved into the store."""
        return self.root / ".staging"


def _link_into(source: Path, target: Path) -> bool:
    """Hard-link ``source`` onto ``target`` atomically; False when the file system refuses."""
    tmp = target.with_name(f".{target.name[:16]}.{os.getpid()}.{threading.get_ident()}.link.part")
    try:
        tmp.unlink(missing_ok=True)
        os.link(source, tmp)
        os.replace(tmp, target)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        logger.debug("cannot hard-link %s into the store (%s): copying", source, error)
        return False
    return True


def _same_device(path: Path, folder: Path) -> bool:
    try:
        return path.stat().st_dev == folder.stat().st_dev
    except OSError:
        return False


@dataclass(frozen=True)
class LedgerEntry:
    """What a completed URL produced (the stored path follows from sha256 and ext)."""

    url: str
    sha256: str
    size: int
    ext: str
    width: int
    height: int


class UrlLedger:
    """URL -> stored file, appended one JSON line per completed file so interrupted runs resume.

    Each line is written with a single ``write`` on an append-mode file and flushed to disk, so
    a crash loses at most the line being written; a torn last line is ignored when loading.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._entries: dict[str, LedgerEntry] = {}
        self._load()

    def _load(self) -> None:
        if not self.path.is_file():
            return
        skipped = 0
        with open(self.path, encoding="utf-8") as handle:
            for line in handle:
                try:
                    entry = LedgerEntry(**json.loads(line))
                except (ValueError, TypeError):
                    skipped += 1
                    continue
                self._entries[entry.url] = entry
        if skipped:
            logger.warning("URL ledger %s: ignored %d unreadable line(s)", self.path, skipped)

    def get(self, url: str) -> LedgerEntry | None:
        """The entry recorded for ``url``, if any."""
        with self._lock:
            return self._entries.get(url)

    def record(self, entry: LedgerEntry) -> None:
        """Append an entry and flush it to disk."""
        line = json.dumps(asdict(entry), sort_keys=True) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line.encode("utf-8"))
                os.fsync(fd)
            finally:
                os.close(fd)
            self._entries[entry.url] = entry

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


def probe_image(path: str | os.PathLike) -> tuple[int, int]:
    """Decode an image fully and return ``(width, height)``.

    Pillow's decompression-bomb guard stays on, and its warning counts as a failure. ``.dcm``
    files are read with pydicom (header and pixel data presence; compressed pixel data is not
    decoded here).

    Args:
        path: the image file.

    Returns:
        ``(width, height)`` in pixels.

    Raises:
        ImageDecodeError: the file is not a decodable image, or is a decompression bomb.
    """
    path = Path(path)
    if path.suffix.lower() == ".dcm":
        return _probe_dicom(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
                width, height = image.size
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as error:
        raise ImageDecodeError(f"decompression bomb refused: {error}") from None
    except Exception as error:  # Pillow raises many types for corrupt input
        raise ImageDecodeError(f"{type(error).__name__}: {_without_path(error, path)}") from None
    if width <= 0 or height <= 0:
        raise ImageDecodeError(f"empty image {width}x{height}")
    return width, height


def _probe_dicom(path: Path) -> tuple[int, int]:
    import pydicom

    try:
        dataset = pydicom.dcmread(path)
        width, height = int(dataset.Columns), int(dataset.Rows)
    except Exception as error:  # pydicom raises many types for corrupt input
        reason = _without_path(error, path)
        raise ImageDecodeError(f"DICOM {type(error).__name__}: {reason}") from None
    if "PixelData" not in dataset:
        raise ImageDecodeError("DICOM without pixel data")
    return width, height


@dataclass(frozen=True)
class FetchRequest:
    """One file to bring into the store.

    Attributes:
        key: the caller's id for it (an image_id).
        url: where it comes from, and its ledger key ("<archive url>#<member>" for an archive
            member; "" keeps a local file out of the ledger).
        name: its upstream name, for the stored extension.
        local_path: a file already on disk (extracted from an archive): it is validated and
            copied into the store instead of downloaded.
    """

    key: str
    url: str
    name: str
    local_path: str = ""


@dataclass(frozen=True)
class StoredFile:
    """A file in the store, with what validation learnt."""

    sha256: str
    size: int
    path: Path
    width: int
    height: int
    bytes_transferred: int


@dataclass(frozen=True)
class FetchFailure:
    """A file that did not make it into the store."""

    key: str
    url: str
    reason: str
    stage: str  # "download", "validate" or "store"
    bytes_transferred: int = 0  # received before it failed (counted once per URL)


@dataclass
class BatchResult:
    """What ``fetch_many`` did."""

    stored: dict[str, StoredFile]
    failures: list[FetchFailure]
    bytes_transferred: int


def fetch_many(
    requests_: Iterable[FetchRequest],
    store: ImageStore,
    ledger: UrlLedger,
    *,
    session: requests.Session | None = None,
    timeout: tuple[float, float] = (10.0, 60.0),
    workers: int = 8,
    max_bytes: int | None = None,
    validate: Callable[[Path], tuple[int, int]] | None = probe_image,
    progress: bool = True,
    description: str = "download",
) -> BatchResult:
    """Download (or copy), validate and store many files concurrently; resumable via the ledger.

    A URL already in the ledger whose file is still in the store is not downloaded again.
    Per-file problems become failures and the batch goes on; anything else (a bug, Ctrl-C)
    cancels the pending work and propagates, leaving only complete files behind.

    Args:
        requests_: the files; several keys may share one URL (fetched once).
        store: where files go.
        ledger: the URL ledger of ``store``.
        session: a session from ``make_session``.
        timeout: ``(connect, read)`` timeouts in seconds.
        workers: concurrent downloads.
        max_bytes: refuse bodies larger than this.
        validate: returns ``(width, height)`` or raises ``ImageDecodeError``; None skips it
            (width and height are then 0).
        progress: show a tqdm progress bar.
        description: the progress bar's label.

    Returns:
        Stored files and failures by key, and the bytes transferred over the network.
    """
    session = session or make_session()
    by_source: dict[tuple[str, str], list[FetchRequest]] = {}
    for request in requests_:
        by_source.setdefault((request.url, request.local_path), []).append(request)
    result = BatchResult(stored={}, failures=[], bytes_transferred=0)
    if not by_source:
        return result
    store.staging_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(store.staging_dir)

    def work(request: FetchRequest) -> StoredFile:
        return _fetch_one(
            request,
            store=store,
            ledger=ledger,
            session=session,
            timeout=timeout,
            max_bytes=max_bytes,
            validate=validate,
        )

    executor = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="download")
    bar = tqdm(total=len(by_source), desc=description, unit="file", disable=not progress)
    try:
        futures: dict[Future, list[FetchRequest]] = {
            executor.submit(work, group[0]): group for group in by_source.values()
        }
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                group = futures[future]
                try:
                    stored = future.result()
                except _FetchFailed as failed:
                    result.bytes_transferred += failed.bytes_transferred
                    for index, request in enumerate(group):
                        result.failures.append(
                            FetchFailure(
                                request.key,
                                request.url,
                                failed.reason,
                                failed.stage,
                                failed.bytes_transferred if index == 0 else 0,
                            )
                        )
                else:
                    result.bytes_transferred += stored.bytes_transferred
                    for index, request in enumerate(group):
                        # Count the bytes once per URL, not once per key sharing it.
                        result.stored[request.key] = (
                            stored if index == 0 else _without_bytes(stored)
                        )
                bar.update(1)
    except BaseException:
        executor.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        bar.close()
    executor.shutdown(wait=True)
    logger.info(
        "%s: %d stored, %d failed, %d bytes transferred",
        description,
        len(result.stored),
        len(result.failures),
        result.bytes_transferred,
    )
    return result


def _remove_stale_partials(folder: Path, older_than_s: float = 3600.0) -> None:
    """Delete temporary files a killed run left behind (a live download touches its file often).

    Only old ones go: another batch (the mask download, say) may be writing to the same folder.
    """
    cutoff = time.time() - older_than_s
    for path in folder.glob("*.part"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                logger.info("removed a partial download left by an interrupted run: %s", path)
        except OSError:
            continue


def _without_bytes(stored: StoredFile) -> StoredFile:
    return StoredFile(stored.sha256, stored.size, stored.path, stored.width, stored.height, 0)


class _FetchFailed(Exception):
    def __init__(self, reason: str, stage: str, bytes_transferred: int = 0):
        super().__init__(reason)
        self.reason = reason
        self.stage = stage
        self.bytes_transferred = bytes_transferred


def _fetch_one(
    request: FetchRequest,
    *,
    store: ImageStore,
    ledger: UrlLedger,
    session: requests.Session,
    timeout: tuple[float, float],
    max_bytes: int | None,
    validate: Callable[[Path], tuple[int, int]] | None,
) -> StoredFile:
    ext = store_extension(request.name)
    # Archive members carry a unique "<archive url>#<member>" too: looking them up first spares
    # a re-run hashing and fully decoding every extracted image again. A file without a URL
    # has no ledger key and is always stored afresh.
    if request.url:
        known = ledger.get(request.url)
        if known is not None and known.ext == ext and store.contains(known.sha256, ext, known.size):
            path = store.path_for(known.sha256, ext)
            return StoredFile(known.sha256, known.size, path, known.width, known.height, 0)
    if request.local_path:
        return _store_local(request, store, ledger, ext, validate)
    staging = store.staging_dir / f"{hashlib.sha1(request.url.encode()).hexdigest()}{ext}"
    try:
        try:
            downloaded = download_file(
                request.url, staging, session=session, timeout=timeout, max_bytes=max_bytes
            )
        except DownloadError as error:
            raise _FetchFailed(error.reason, "download", error.bytes_transferred) from None
        try:
            width, height = _validate(validate, staging)
        except _FetchFailed as failed:
            failed.bytes_transferred = downloaded.bytes_transferred
            raise
        path = store.put(staging, ext, sha256=downloaded.sha256, move=True)
    finally:
        staging.unlink(missing_ok=True)
    ledger.record(LedgerEntry(request.url, downloaded.sha256, downloaded.size, ext, width, height))
    return StoredFile(
        downloaded.sha256, downloaded.size, path, width, height, downloaded.bytes_transferred
    )


def _store_local(
    request: FetchRequest,
    store: ImageStore,
    ledger: UrlLedger,
    ext: str,
    validate: Callable[[Path], tuple[int, int]] | None,
) -> StoredFile:
    source = Path(request.local_path)
    if not source.is_file():
        raise _FetchFailed(f"missing extracted file {source}", "store")
    width, height = _validate(validate, source)
    sha256 = sha256_file(source)
    size = source.stat().st_size
    # A link, not a move: the extraction stays complete, so a re-run lists the same files;
    # not a copy either, so tens of GB of archive images do not take their space twice.
    path = store.put(source, ext, sha256=sha256, link=True)
    if request.url:
        ledger.record(LedgerEntry(request.url, sha256, size, ext, width, height))
    return StoredFile(sha256, size, path, width, height, 0)


def _validate(validate: Callable[[Path], tuple[int, int]] | None, path: Path) -> tuple[int, int]:
    if validate is None:
        return 0, 0
    try:
        return validate(path)
    except ImageDecodeError as error:
        raise _FetchFailed(f"undecodable image: {error}", "validate") from None
