"""HttpSourceClient over a real loopback server: metadata, listings, archives, caching."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from covid_cxnet_pipeline.download import make_session
from covid_cxnet_pipeline.sources.http_client import HttpSourceClient
from covid_cxnet_pipeline.sources.protocol import SourceUnavailable
from tests.http_faults import FaultPlan, FaultServer


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture
def server():
    plan = FaultPlan()
    plan.files["/src/metadata.csv"] = b"\xef\xbb\xbfimage,finding\n1.png,COVID-19\n"
    plan.files["/src/"] = b'<a href="metadata.csv">m</a><a href="images/">i</a>'
    plan.files["/src/images/"] = b'<a href="1.png">1</a><a href="2%20b.PNG">2</a>'
    plan.files["/src/data.zip"] = zip_bytes({"CXR_png/a.png": b"a", "ClinicalReadings/a.txt": b"M"})
    plan.files["/src/slip.zip"] = zip_bytes({"../../evil.txt": b"x"})
    plan.files["/other/labels.csv.gz"] = b"\x1f\x8b fake gzip"
    plan.files["/api/tree"] = json.dumps(
        {"truncated": False, "tree": [{"path": "images/1.png", "type": "blob"}]}
    ).encode()
    with FaultServer(plan) as running:
        yield running


def client(server, tmp_path, **kwargs) -> HttpSourceClient:
    return HttpSourceClient(
        "armiro_covidcxnet",
        f"{server.url}/src",
        cache_dir=tmp_path / "cache",
        session=make_session(retries=0),
        **kwargs,
    )


def test_url_quotes_segments_and_refuses_traversal(server, tmp_path):
    source = client(server, tmp_path)
    assert source.base_url.endswith("/src/")
    assert source.url("X-Ray Image DataSet/a #1.png") == (
        f"{server.url}/src/X-Ray%20Image%20DataSet/a%20%231.png"
    )
    for bad in ("../x", "/etc/passwd", "a/../../b"):
        with pytest.raises(ValueError, match="unsafe"):
            source.url(bad)


def test_fetch_metadata_is_cached_and_counted(server, tmp_path):
    first = client(server, tmp_path)
    path = first.fetch_metadata("metadata.csv")
    assert path.read_bytes().startswith(b"\xef\xbb\xbfimage")
    assert first.bytes_transferred == len(server.plan.files["/src/metadata.csv"])
    second = client(server, tmp_path)
    assert second.fetch_metadata("metadata.csv") == path
    assert second.bytes_transferred == 0
    assert server.plan.hits["/src/metadata.csv"] == 1
    refreshed = client(server, tmp_path, refresh_metadata=True)
    refreshed.fetch_metadata("metadata.csv")
    assert server.plan.hits["/src/metadata.csv"] == 2


def test_fetch_metadata_from_an_absolute_url(server, tmp_path):
    path = client(server, tmp_path).fetch_metadata(f"{server.url}/other/labels.csv.gz")
    assert path.name.endswith("labels.csv.gz")


def test_fetch_metadata_missing_names_source_and_reason(server, tmp_path):
    with pytest.raises(SourceUnavailable, match=r"armiro_covidcxnet.*nope.csv: HTTP 404"):
        client(server, tmp_path).fetch_metadata("nope.csv")


def test_list_files_http_index_with_prefix_and_cache(server, tmp_path):
    source = client(server, tmp_path, listing="http_index")
    assert source.list_files("images/") == ["images/1.png", "images/2 b.PNG"]
    hits = sum(server.plan.hits.values())
    again = client(server, tmp_path, listing="http_index")
    assert again.list_files("images") == ["images/1.png", "images/2 b.PNG"]
    assert sum(server.plan.hits.values()) == hits and again.bytes_transferred == 0


def test_list_files_github_tree(server, tmp_path):
    source = client(server, tmp_path, listing="github_tree", listing_url=f"{server.url}/api/tree")
    assert source.list_files("images") == ["images/1.png"]
    assert source.list_files("masks") == []


def test_list_files_without_listing_is_a_clear_error(server, tmp_path):
    with pytest.raises(SourceUnavailable, match=r"ingest.sources.armiro_covidcxnet.listing"):
        client(server, tmp_path).list_files("images")
    with pytest.raises(SourceUnavailable, match="listing_url"):
        client(server, tmp_path, listing="github_tree").list_files()
    with pytest.raises(SourceUnavailable, match="http_index listing"):
        HttpSourceClient(
            "x",
            f"{server.url}/absent/",
            cache_dir=tmp_path / "c",
            session=make_session(retries=0),
            listing="http_index",
        ).list_files()


def test_fetch_archive_extracts_once_and_refuses_zip_slip(server, tmp_path):
    source = client(server, tmp_path)
    folder = source.fetch_archive("data.zip")
    assert (folder / "CXR_png" / "a.png").read_bytes() == b"a"
    assert client(server, tmp_path).fetch_archive(f"{server.url}/src/data.zip") == folder
    assert server.plan.hits["/src/data.zip"] == 1
    with pytest.raises(SourceUnavailable, match=r"refused.*\.\."):
        source.fetch_archive("slip.zip")
    with pytest.raises(SourceUnavailable, match="HTTP 404"):
        source.fetch_archive("missing.zip")


def test_damaged_archive_is_source_unavailable_naming_its_url(server, tmp_path):
    from tests.test_archives import corrupt_deflate_zip_bytes, file_then_folder_zip_bytes

    server.plan.files["/src/corrupt.zip"] = corrupt_deflate_zip_bytes()
    server.plan.files["/src/clash.zip"] = file_then_folder_zip_bytes()
    source = client(server, tmp_path)
    with pytest.raises(SourceUnavailable, match=r"/src/corrupt\.zip refused.*invalid block type"):
        source.fetch_archive("corrupt.zip")
    with pytest.raises(SourceUnavailable, match=r"/src/clash\.zip refused.*'a/b'"):
        source.fetch_archive("clash.zip")


def test_config_errors_name_the_parameter(tmp_path):
    with pytest.raises(ValueError, match=r"ingest.sources.s.base_url"):
        HttpSourceClient("s", "", cache_dir=tmp_path, session=make_session())
    with pytest.raises(ValueError, match=r"ingest.sources.s.listing"):
        HttpSourceClient(
            "s", "http://127.0.0.1/", cache_dir=tmp_path, session=make_session(), listing="ftp"
        )


def test_archive_progress_follows_download_progress(server, tmp_path, capsys):
    params = {"cache_dir": str(tmp_path / "cache"), "retries": 0}
    session = make_session(retries=0)
    quiet = HttpSourceClient.from_config(
        "s", {"base_url": f"{server.url}/src/"}, params | {"progress": False}, session
    )
    quiet.fetch_archive("data.zip")
    assert capsys.readouterr().err == ""
    shown = HttpSourceClient.from_config(
        "s2", {"base_url": f"{server.url}/src/"}, params, session
    )  # progress is on by default
    shown.fetch_archive("data.zip")
    err = capsys.readouterr().err
    assert "s2 data.zip" in err and "extract" in err


def test_archive_body_over_the_cap_is_refused_while_downloading(server, tmp_path):
    big = zip_bytes({"CXR_png/a.png": bytes(range(256)) * 40})  # stored, ~10 KiB
    server.plan.files["/src/big.zip"] = big
    source = client(server, tmp_path, max_archive_bytes=len(big) - 1)
    with pytest.raises(SourceUnavailable, match=r"big\.zip.*too large"):
        source.fetch_archive("big.zip")
    assert not (tmp_path / "cache" / "armiro_covidcxnet" / "archives").exists() or not any(
        (tmp_path / "cache" / "armiro_covidcxnet" / "archives").iterdir()
    )
