"""Safe archive extraction: normal zip/tar.gz, caching, and hostile archives refused."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from covid_cxnet_pipeline.archives import ArchiveError, extract_archive, safe_member_path

LIMIT = 1 << 20


def make_zip(path: Path, members: dict[str, bytes], symlinks: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            bundle.writestr(info, target)
    return path


def make_tar(path: Path, members: list[tarfile.TarInfo], data: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as bundle:
        for info in members:
            payload = data.get(info.name)
            if payload is not None:
                info.size = len(payload)
            bundle.addfile(info, io.BytesIO(payload) if payload is not None else None)
    return path


def extracted_folders(dest_root: Path) -> list[str]:
    """What extraction left in ``dest_root``, without the remembered digests."""
    return sorted(p.name for p in dest_root.iterdir() if p.name != ".digests")


def file_info(name: str) -> tarfile.TarInfo:
    return tarfile.TarInfo(name)


def test_zip_extracts_and_is_cached(tmp_path):
    archive = make_zip(
        tmp_path / "NLM-MontgomeryCXRSet.zip",
        {"MontgomerySet/CXR_png/MCUCXR_0001_0.png": b"png", "MontgomerySet/README.md": b"hi"},
    )
    folder = extract_archive(archive, tmp_path / "extracted", max_total_bytes=LIMIT)
    assert (folder / "MontgomerySet" / "CXR_png" / "MCUCXR_0001_0.png").read_bytes() == b"png"
    marker = folder / "marker"
    marker.write_text("kept")
    again = extract_archive(archive, tmp_path / "extracted", max_total_bytes=LIMIT)
    assert again == folder and marker.exists()  # reused, not extracted again
    assert extracted_folders(tmp_path / "extracted") == [folder.name]


def test_tar_gz_extracts(tmp_path):
    directory = tarfile.TarInfo("images")
    directory.type = tarfile.DIRTYPE
    archive = make_tar(
        tmp_path / "images_001.tar.gz",
        [directory, file_info("images/00000001_000.png")],
        {"images/00000001_000.png": b"\x89PNG"},
    )
    folder = extract_archive(archive, tmp_path / "out", max_total_bytes=LIMIT)
    assert (folder / "images" / "00000001_000.png").read_bytes() == b"\x89PNG"


@pytest.mark.parametrize(
    "name", ["../evil.txt", "a/../../evil.txt", "/etc/evil.txt", "C:/evil.txt", "a\\..\\..\\evil"]
)
def test_zip_slip_is_refused(tmp_path, name):
    archive = make_zip(tmp_path / "slip.zip", {"ok.txt": b"ok", name: b"pwned"})
    dest = tmp_path / "deep" / "out"
    with pytest.raises(ArchiveError):
        extract_archive(archive, dest, max_total_bytes=LIMIT)
    assert extracted_folders(dest) == []  # the temporary folder is gone too
    assert not list(tmp_path.rglob("evil*"))


def test_zip_symlink_is_refused(tmp_path):
    archive = make_zip(tmp_path / "link.zip", {"a.txt": b"a"}, symlinks={"link": "/etc/passwd"})
    with pytest.raises(ArchiveError, match="link"):
        extract_archive(archive, tmp_path / "out", max_total_bytes=LIMIT)
    assert extracted_folders(tmp_path / "out") == []


@pytest.mark.parametrize(
    "kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.FIFOTYPE]
)
def test_tar_links_and_devices_are_refused(tmp_path, kind):
    special = tarfile.TarInfo("images/escape")
    special.type = kind
    special.linkname = "/etc/passwd" if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
    archive = make_tar(
        tmp_path / "evil.tar.gz", [file_info("images/a.png"), special], {"images/a.png": b"a"}
    )
    with pytest.raises(ArchiveError):
        extract_archive(archive, tmp_path / "out", max_total_bytes=LIMIT)
    assert extracted_folders(tmp_path / "out") == []


def test_tar_path_traversal_is_refused(tmp_path):
    archive = make_tar(tmp_path / "slip.tar.gz", [file_info("../../evil")], {"../../evil": b"x"})
    with pytest.raises(ArchiveError, match=r"\.\."):
        extract_archive(archive, tmp_path / "out", max_total_bytes=LIMIT)
    assert not list(tmp_path.rglob("evil"))


def test_size_limit_is_enforced(tmp_path):
    big = b"\0" * (LIMIT + 1)  # compresses to almost nothing: a zip bomb in miniature
    archive = make_zip(tmp_path / "bomb.zip", {"big.bin": big})
    assert archive.stat().st_size < 10_000
    with pytest.raises(ArchiveError, match="max_archive_bytes"):
        extract_archive(archive, tmp_path / "out", max_total_bytes=LIMIT)
    tar_archive = make_tar(tmp_path / "bomb.tar.gz", [file_info("big.bin")], {"big.bin": big})
    with pytest.raises(ArchiveError, match="max_archive_bytes"):
        extract_archive(tar_archive, tmp_path / "out", max_total_bytes=LIMIT)
    assert extracted_folders(tmp_path / "out") == []


def test_not_an_archive(tmp_path):
    path = tmp_path / "fake.zip"
    path.write_bytes(b"<html>rate limited</html>")
    with pytest.raises(ArchiveError, match="not a zip or tar"):
        extract_archive(path, tmp_path / "out", max_total_bytes=LIMIT)


def test_safe_member_path():
    assert str(safe_member_path("./a//b/c.png")) == "a/b/c.png"
    for bad in ("", "/", "..", "a/..", "/abs", "x\x00y", "D:\\x"):
        with pytest.raises(ArchiveError):
            safe_member_path(bad)


def corrupt_deflate_zip_bytes() -> bytes:
    """A zip whose one deflated member has an invalid block type (zlib's "invalid block type")."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("CXR_png/a.png", b"chest x-ray " * 400)
        info = bundle.getinfo("CXR_png/a.png")
    data = bytearray(buffer.getvalue())
    name_length = int.from_bytes(data[info.header_offset + 26 : info.header_offset + 28], "little")
    extra_length = int.from_bytes(data[info.header_offset + 28 : info.header_offset + 30], "little")
    # First deflate byte 0xFF: BFINAL=1, BTYPE=11, which RFC 1951 reserves (an error).
    data[info.header_offset + 30 + name_length + extra_length] = 0xFF
    return bytes(data)


def file_then_folder_zip_bytes() -> bytes:
    """A zip with a file ``a`` and then a member ``a/b`` that needs ``a`` to be a folder."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr("a", b"file")
        bundle.writestr("a/b", b"member below a file")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("make", "reason"),
    [(corrupt_deflate_zip_bytes, "invalid block type"), (file_then_folder_zip_bytes, "a/b")],
)
def test_zip_that_fails_midway_is_an_archive_error_naming_it(tmp_path, make, reason):
    archive = tmp_path / "images_001.zip"
    archive.write_bytes(make())
    with pytest.raises(ArchiveError, match=rf"images_001\.zip.*{reason}"):
        extract_archive(archive, tmp_path / "extracted", max_total_bytes=LIMIT)
    assert extracted_folders(tmp_path / "extracted") == []  # no partial folder left


def test_tar_with_file_then_member_below_it_is_an_archive_error(tmp_path):
    archive = make_tar(
        tmp_path / "images_002.tar.gz",
        [file_info("a"), file_info("a/b")],
        {"a": b"file", "a/b": b"below a file"},
    )
    with pytest.raises(ArchiveError, match=r"images_002\.tar\.gz.*a/b"):
        extract_archive(archive, tmp_path / "extracted", max_total_bytes=LIMIT)
    assert extracted_folders(tmp_path / "extracted") == []


def test_extraction_progress_bar_only_when_asked(tmp_path, capsys):
    archive = make_zip(tmp_path / "images_003.zip", {"a.png": b"x" * 2048})
    extract_archive(archive, tmp_path / "quiet", max_total_bytes=LIMIT)
    assert capsys.readouterr().err == ""
    extract_archive(archive, tmp_path / "shown", max_total_bytes=LIMIT, progress=True)
    err = capsys.readouterr().err
    assert "extract images_003.zip" in err and "2.00k" in err


def test_digest_is_remembered_until_the_archive_changes(tmp_path, monkeypatch):
    import os

    from covid_cxnet_pipeline import archives

    archive = make_zip(tmp_path / "images_004.zip", {"a.png": b"first"})
    folder = extract_archive(archive, tmp_path / "extracted", max_total_bytes=LIMIT)
    hashed = []
    real_sha256 = archives.sha256_file
    monkeypatch.setattr(
        archives, "sha256_file", lambda path: hashed.append(path) or real_sha256(path)
    )
    # A re-run finds the extraction without reading the archive again.
    assert extract_archive(archive, tmp_path / "extracted", max_total_bytes=LIMIT) == folder
    assert hashed == []
    # New content (and so a new size or mtime) is hashed and extracted anew.
    make_zip(archive, {"a.png": b"second version"})
    os.utime(archive, ns=(1, 1))
    changed = extract_archive(archive, tmp_path / "extracted", max_total_bytes=LIMIT)
    assert len(hashed) == 1 and changed != folder
    assert (changed / "a.png").read_bytes() == b"second version"
    # A torn digest record is ignored, not trusted.
    for record in (tmp_path / "extracted" / ".digests").glob("*.json"):
        record.write_text("{not json")
    assert extract_archive(archive, tmp_path / "extracted", max_total_bytes=LIMIT) == changed
    assert len(hashed) == 2
