"""Listings over real loopback servers: http.server indexes, hostile links, GitHub trees."""

from __future__ import annotations

import json
import logging

import pytest

from covid_cxnet_pipeline.download import make_session
from covid_cxnet_pipeline.listing import ListingError, github_tree, http_index, quote_relpath
from tests.http_faults import FaultPlan, FaultServer


def text_getter():
    session = make_session(retries=0)

    def get_text(url: str) -> str:
        response = session.get(url, timeout=(2, 5))
        response.raise_for_status()
        return response.text

    return get_text


def test_http_index_walks_http_server_folders(tmp_path, serve_directory):
    root = tmp_path / "mirror" / "darkcovidnet_nih"
    (root / "X-Ray Image DataSet" / "Covid-19").mkdir(parents=True)
    (root / "X-Ray Image DataSet" / "No_findings").mkdir()
    (root / "X-Ray Image DataSet" / "Covid-19" / "a #1 (2).jpg").write_bytes(b"a")
    (root / "X-Ray Image DataSet" / "No_findings" / "00000001_000.png").write_bytes(b"b")
    (root / "X-Ray Image DataSet" / "No_findings" / "ünïcode.png").write_bytes(b"c")
    (root / "README.md").write_bytes(b"r")
    base = serve_directory(tmp_path / "mirror") + "/darkcovidnet_nih/"
    files = http_index(base, text_getter())
    assert files == [
        "README.md",
        "X-Ray Image DataSet/Covid-19/a #1 (2).jpg",
        "X-Ray Image DataSet/No_findings/00000001_000.png",
        "X-Ray Image DataSet/No_findings/ünïcode.png",
    ]
    under = http_index(base, text_getter(), prefix="X-Ray Image DataSet/Covid-19/")
    assert under == ["X-Ray Image DataSet/Covid-19/a #1 (2).jpg"]


HOSTILE_INDEX = """<html><body>
<a href="?C=N;O=D">sort</a>
<a href="../">Parent Directory</a>
<a href="/">site root</a>
<a href="good.png">good.png</a>
<a href="sub/">sub/</a>
<a href="../other_source/secret.png">sibling</a>
<a href="%2e%2e/%2e%2e/etc/passwd">encoded dots</a>
<a href="sub/../../escape.png">dots in the middle</a>
<a href="http://evil.example/x.png">other host</a>
<a href="a%2Fb.png">encoded slash</a>
<a href="/src/">absolute inside base</a>
</body></html>"""


def test_http_index_refuses_links_leaving_the_base(caplog):
    plan = FaultPlan()
    plan.files["/src/"] = HOSTILE_INDEX.encode()
    plan.files["/src/sub/"] = b'<a href="deep.png">deep</a><a href="../">up</a>'
    plan.content_types = {"/src/": "text/html", "/src/sub/": "text/html"}
    with FaultServer(plan) as server, caplog.at_level(logging.WARNING):
        files = http_index(f"{server.url}/src/", text_getter())
    assert files == ["good.png", "sub/deep.png"]
    warned = caplog.text
    assert "%2e%2e" in warned and "sub/../../escape.png" in warned and "a%2Fb.png" in warned
    assert server.plan.hits["/src/"] == 1  # visited once despite the link back to itself


def test_http_index_loop_guard():
    plan = FaultPlan()
    # Every page links one level deeper, forever.
    plan.files.update({f"/r/{'d/' * depth}": b'<a href="d/">d</a>' for depth in range(10)})
    with FaultServer(plan) as server, pytest.raises(ListingError, match="index pages"):
        http_index(f"{server.url}/r/", text_getter(), max_pages=5)


def test_github_tree_lists_blobs_and_warns_when_truncated(caplog):
    tree = {
        "sha": "3ade488",
        "truncated": True,
        "tree": [
            {"path": "chest_xray_images", "type": "tree"},
            {"path": "chest_xray_images/covid19/001.jpg", "type": "blob"},
            {"path": "metadata.csv", "type": "blob"},
            {"path": "../../etc/passwd", "type": "blob"},
            {"path": "/abs.png", "type": "blob"},
            {"path": "lib", "type": "commit"},
        ],
    }
    plan = FaultPlan()
    plan.files["/repos/armiro/COVID-CXNet/git/trees/3ade488"] = json.dumps(tree).encode()
    with FaultServer(plan) as server, caplog.at_level(logging.WARNING):
        files = github_tree(
            f"{server.url}/repos/armiro/COVID-CXNet/git/trees/3ade488", text_getter()
        )
    assert files == ["chest_xray_images/covid19/001.jpg", "metadata.csv"]
    assert "recursive=1" in plan.queries
    assert "truncated" in caplog.text and "../../etc/passwd" in caplog.text


def test_github_tree_rejects_non_tree_json():
    plan = FaultPlan()
    plan.files["/t"] = b'{"message": "API rate limit exceeded"}'
    with FaultServer(plan) as server, pytest.raises(ListingError, match="not a GitHub"):
        github_tree(f"{server.url}/t", text_getter())


def test_quote_relpath():
    assert (
        quote_relpath("X-Ray Image DataSet/a #1?.png") == "X-Ray%20Image%20DataSet/a%20%231%3F.png"
    )
