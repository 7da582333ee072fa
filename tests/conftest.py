"""Shared fixtures: the real chest X-rays in ../shared/data, served on 127.0.0.1."""

from __future__ import annotations

import functools
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """Where ../shared/data lives (``CXR_SHARED_DATA`` overrides)."""
    return Path(os.environ.get("CXR_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data"))


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - signature fixed by the base class
        pass


@functools.cache
def _skip_reason() -> str | None:
    root = shared_data_dir()
    if not (root / "manifest.csv").is_file() or not (root / "mirror").is_dir():
        return f"needs the real chest X-rays in {root} (../shared/data beside the project root)"
    return None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The ../shared/data folder; skips the test when it is absent."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    return shared_data_dir()


@pytest.fixture(scope="session")
def serve_directory():
    """Factory: serve a folder over HTTP on 127.0.0.1 and return its base URL (no trailing /)."""
    servers = []

    def _serve(directory: Path) -> str:
        handler = functools.partial(_QuietHandler, directory=str(directory))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield _serve
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def mirror_url(shared_data, serve_directory) -> Iterator[str]:
    """Base URL of a loopback HTTP server over ../shared/data/mirror."""
    return serve_directory(shared_data / "mirror")
