"""A real HTTP server on 127.0.0.1 that misbehaves on request: 404, 500s, stalls, short bodies."""

from __future__ import annotations

import http.server
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class FaultPlan:
    """What the server does, by request path (e.g. ``"/a.png"``)."""

    files: dict[str, bytes] = field(default_factory=dict)  # served with 200
    content_types: dict[str, str] = field(default_factory=dict)
    fail_first: dict[str, int] = field(default_factory=dict)  # 500 this many times first
    status: dict[str, int] = field(default_factory=dict)  # always answer this status
    delay_s: dict[str, float] = field(default_factory=dict)  # sleep before the headers
    truncate_to: dict[str, int] = field(default_factory=dict)  # send only this many bytes
    hits: Counter = field(default_factory=Counter)
    queries: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(http.server.BaseHTTPRequestHandler):
    plan: FaultPlan

    def log_message(self, format, *args):  # noqa: A002 - signature fixed by the base class
        pass

    def do_GET(self):  # noqa: N802 - name fixed by the base class
        parts = urlsplit(self.path)
        path = parts.path
        plan = self.plan
        with plan.lock:
            plan.hits[path] += 1
            plan.queries.append(parts.query)
            failing = plan.fail_first.get(path, 0) > 0
            if failing:
                plan.fail_first[path] -= 1
        if path in plan.delay_s:
            time.sleep(plan.delay_s[path])
        if failing or path in plan.status:
            self.send_error(500 if failing else plan.status[path])
            return
        if path not in plan.files:
            self.send_error(404)
            return
        body = plan.files[path]
        self.send_response(200)
        self.send_header("Content-Type", plan.content_types.get(path, "application/octet-stream"))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        sent = body[: plan.truncate_to[path]] if path in plan.truncate_to else body
        try:
            self.wfile.write(sent)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        # HTTP/1.0 closes the connection after each response: a short body is final.
        self.close_connection = True


class FaultServer:
    """Serve a ``FaultPlan`` on 127.0.0.1 in a background thread (a context manager)."""

    def __init__(self, plan: FaultPlan | None = None):
        self.plan = plan or FaultPlan()
        handler = type("Handler", (_Handler,), {"plan": self.plan})
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FaultServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._server.server_close()
