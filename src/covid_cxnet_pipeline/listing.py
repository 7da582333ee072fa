"""File listings of upstream layouts: the GitHub git-trees API and HTML directory indexes.

Names in listings are untrusted: paths that are absolute, contain ``..`` or leave the base URL
are refused with a warning, never followed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from html.parser import HTMLParser
from urllib.parse import quote, unquote, urldefrag, urljoin, urlsplit, urlunsplit

logger = logging.getLogger(__name__)

# Fetches a URL and returns its body as text (raises on failure).
GetText = Callable[[str], str]


class ListingError(RuntimeError):
    """A listing could not be read or parsed."""


def safe_relpath(path: str) -> str | None:
    """``path`` if it is a clean relative POSIX path, else None.

    Args:
        path: an untrusted relative path (already URL-unquoted).

    Returns:
        The path, or None when it is empty, absolute, or has ``.``, ``..``, empty components,
        backslashes or NUL bytes.
    """
    if not path or path.startswith("/") or "\\" in path or "\x00" in path:
        return None
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return None
    return path


def quote_relpath(relpath: str) -> str:
    """URL-quote each segment of a relative path (spaces, ``#``, ``?``... become escapes)."""
    return "/".join(quote(part, safe="") for part in relpath.split("/"))


def github_tree(listing_url: str, get_text: GetText) -> list[str]:
    """Every blob path of a GitHub git-trees API listing, sorted.

    Args:
        listing_url: ``https://api.github.com/repos/<owner>/<repo>/git/trees/<sha>``;
            ``recursive=1`` is added when absent.
        get_text: fetches a URL's body as text.

    Returns:
        Relative paths of the files (blobs) in the tree.

    Raises:
        ListingError: the body is not a git-trees JSON document.
    """
    url = listing_url
    if "recursive=" not in urlsplit(url).query:
        url += ("&" if urlsplit(url).query else "?") + "recursive=1"
    try:
        document = json.loads(get_text(url))
        entries = document["tree"]
    except (ValueError, KeyError, TypeError) as error:
        raise ListingError(f"{url}: not a GitHub git-trees listing ({error})") from None
    if document.get("truncated"):
        logger.warning(
            "GitHub tree listing %s is truncated by the API (over 100,000 entries or 7 MB): files "
            "beyond the cut are missing. Point listing_url at a sub-tree or use a metadata file.",
            url,
        )
    paths = []
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("type") != "blob":
            continue
        path = safe_relpath(str(entry.get("path", "")))
        if path is None:
            logger.warning("%s: refused unsafe path %r", url, entry.get("path"))
            continue
        paths.append(path)
    return sorted(paths)


class _LinkParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag.lower() == "a":
            for name, value in attrs:
                if name.lower() == "href" and value:
                    self.hrefs.append(value)


def http_index(
    base_url: str, get_text: GetText, prefix: str = "", max_pages: int = 10_000
) -> list[str]:
    """Walk HTML directory indexes (``python -m http.server``, Apache, nginx) recursively.

    Args:
        base_url: the source root; only links below it are followed.
        get_text: fetches a URL's body as text.
        prefix: relative folder to start from ("" for the root).
        max_pages: stop with an error after this many index pages (a loop guard).

    Returns:
        Sorted relative paths (URL-unquoted, from ``base_url``) of every file found.

    Raises:
        ListingError: more than ``max_pages`` index pages.
    """
    base = base_url if base_url.endswith("/") else base_url + "/"
    base_parts = urlsplit(base)
    prefix = prefix.strip("/")
    start = base + (quote_relpath(prefix) + "/" if prefix else "")
    files: set[str] = set()
    seen: set[str] = set()
    queue = [start]
    while queue:
        page = queue.pop()
        if page in seen:
            continue
        seen.add(page)
        if len(seen) > max_pages:
            raise ListingError(f"{base}: more than {max_pages} index pages; is there a loop?")
        parser = _LinkParser()
        parser.feed(get_text(page))
        for href in parser.hrefs:
            relpath, is_folder = _relative_link(base_parts, page, href)
            if relpath is None:
                continue
            if is_folder:
                queue.append(base + quote_relpath(relpath) + "/")
            else:
                files.add(relpath)
    return sorted(files)


def _relative_link(base_parts, page: str, href: str) -> tuple[str | None, bool]:
    """The unquoted path of ``href`` relative to the base, and whether it is a folder."""
    if href.startswith(("?", "#", "mailto:", "javascript:")):
        return None, False
    raw_path = urlsplit(href).path
    if any(unquote(part) in ("..", ".") for part in raw_path.split("/")):
        if href not in ("../", ".."):  # the usual "parent directory" link is not hostile
            logger.warning("%s: refused link with '..': %r", page, href)
        return None, False
    target = urlsplit(urldefrag(urljoin(page, href)).url)
    if (target.scheme, target.netloc) != (base_parts.scheme, base_parts.netloc) or not (
        target.path.startswith(base_parts.path)
    ):
        # Absolute links back to parents or other hosts are common in indexes: skip quietly.
        logger.debug("%s: skipped link outside %s: %r", page, urlunsplit(base_parts), href)
        return None, False
    rest = target.path[len(base_parts.path) :]
    is_folder = rest.endswith("/")
    segments = [unquote(part) for part in rest.strip("/").split("/")] if rest.strip("/") else []
    if not segments:
        return None, False
    if any("/" in segment for segment in segments):
        logger.warning("%s: refused link with an encoded '/': %r", page, href)
        return None, False
    relpath = safe_relpath("/".join(segments))
    if relpath is None:
        logger.warning("%s: refused unsafe link %r", page, href)
        return None, False
    return relpath, is_folder
