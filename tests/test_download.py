"""Downloader faults against a real loopback server, the image store, the ledger and resumption."""

from __future__ import annotations

import hashlib
import io
import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from covid_cxnet_pipeline.download import (
    DownloadError,
    FetchRequest,
    ImageDecodeError,
    ImageStore,
    UrlLedger,
    download_file,
    fetch_many,
    make_session,
    probe_image,
    store_extension,
    write_atomically,
)
from tests.http_faults import FaultPlan, FaultServer

FAST = {"retries": 3, "backoff_factor": 0.0}


def png_bytes(width: int, height: int, seed: int, mode: str = "L") -> bytes:
    """A small real PNG with random pixels."""
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (height, width), dtype=np.uint8)).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def bomb_png_bytes() -> bytes:
    """A tiny PNG declaring 90 million pixels: over Pillow's decompression-bomb threshold."""
    buffer = io.BytesIO()
    Image.new("1", (10_000, 9_000)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def leftovers(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.name.endswith(".part")]


@pytest.fixture
def server():
    with FaultServer(FaultPlan()) as running:
        yield running


def test_download_ok_verifies_and_renames(server, tmp_path):
    body = png_bytes(8, 6, seed=0)
    server.plan.files["/a.png"] = body
    dest = tmp_path / "out" / "a.png"
    result = download_file(
        f"{server.url}/a.png",
        dest,
        session=make_session(**FAST),
        expected_sha256=sha(body),
        expected_size=len(body),
    )
    assert dest.read_bytes() == body
    assert (result.path, result.sha256, result.size, result.bytes_transferred) == (
        dest,
        sha(body),
        len(body),
        len(body),
    )
    assert leftovers(tmp_path) == []


def test_download_404_leaves_nothing(server, tmp_path):
    dest = tmp_path / "missing.png"
    with pytest.raises(DownloadError) as caught:
        download_file(f"{server.url}/missing.png", dest, session=make_session(**FAST))
    assert caught.value.reason == "HTTP 404"
    assert not dest.exists()
    assert list(tmp_path.iterdir()) == []


def test_download_500_then_200_is_retried(server, tmp_path):
    server.plan.files["/flaky.bin"] = b"x" * 1000
    server.plan.fail_first["/flaky.bin"] = 2
    result = download_file(
        f"{server.url}/flaky.bin", tmp_path / "f.bin", session=make_session(**FAST)
    )
    assert result.size == 1000
    assert server.plan.hits["/flaky.bin"] == 3


def test_download_persistent_503_reports_status_after_retries(server, tmp_path):
    server.plan.status["/down"] = 503
    with pytest.raises(DownloadError) as caught:
        download_file(f"{server.url}/down", tmp_path / "d", session=make_session(**FAST))
    assert caught.value.reason == "HTTP 503"
    assert server.plan.hits["/down"] == 4  # the first try and three retries


def test_download_read_timeout(server, tmp_path):
    server.plan.files["/slow"] = b"late"
    server.plan.delay_s["/slow"] = 1.0
    started = time.monotonic()
    with pytest.raises(DownloadError) as caught:
        download_file(
            f"{server.url}/slow",
            tmp_path / "slow",
            session=make_session(retries=0),
            timeout=(2.0, 0.2),
        )
    assert caught.value.reason == "timeout"
    assert time.monotonic() - started < 1.0
    assert not (tmp_path / "slow").exists()


def test_download_truncated_body_keeps_previous_file(server, tmp_path):
    server.plan.files["/short.png"] = b"y" * 5000
    server.plan.truncate_to["/short.png"] = 1234
    dest = tmp_path / "short.png"
    dest.write_bytes(b"previous complete file")
    with pytest.raises(DownloadError) as caught:
        download_file(f"{server.url}/short.png", dest, session=make_session(retries=0))
    assert caught.value.reason == "truncated: got 1234 of 5000 bytes"
    assert dest.read_bytes() == b"previous complete file"
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("kwargs", "reason_start"),
    [
        ({"expected_sha256": "0" * 64}, "sha256 mismatch"),
        ({"expected_size": 11}, "size mismatch: got 10 bytes, expected 11"),
        ({"max_bytes": 5}, "too large: 10 bytes > 5"),
    ],
)
def test_download_verification_failures(server, tmp_path, kwargs, reason_start):
    server.plan.files["/ten"] = b"0123456789"
    dest = tmp_path / "ten"
    with pytest.raises(DownloadError) as caught:
        download_file(f"{server.url}/ten", dest, session=make_session(**FAST), **kwargs)
    assert caught.value.reason.startswith(reason_start)
    assert not dest.exists()
    assert leftovers(tmp_path) == []


def test_download_connection_refused(tmp_path):
    with FaultServer() as stopped:
        url = f"{stopped.url}/x"
    with pytest.raises(DownloadError) as caught:
        download_file(url, tmp_path / "x", session=make_session(retries=1, backoff_factor=0.0))
    assert caught.value.reason.startswith("connection error")


def test_store_extension_is_lower_cased_and_sanitised():
    assert store_extension("chest_xray_images/covid19/374.PNG") == ".png"
    assert store_extension("a.b.JFIF") == ".jfif"
    assert store_extension("noext") == ""
    assert store_extension("evil.png/../x.sh;rm") == ""
    assert store_extension("x." + "a" * 20) == ""


def test_image_store_put_is_idempotent_and_content_addressed(tmp_path):
    store = ImageStore(tmp_path / "store")
    source = tmp_path / "in.PNG"
    body = png_bytes(4, 4, seed=1)
    source.write_bytes(body)
    first = store.put(source, ".png")
    second = store.put(source, ".png")
    digest = sha(body)
    assert first == second == tmp_path / "store" / digest[:2] / f"{digest}.png"
    assert first.read_bytes() == body
    assert source.exists()  # copied, not moved
    moved = store.put(source, ".png", move=True)
    assert moved == first and not source.exists()
    assert list(store.iter_files()) == [first]
    with pytest.raises(ValueError):
        store.path_for("../../etc", ".png")


def test_probe_image_reads_size_and_refuses_bad_files(tmp_path):
    good = tmp_path / "good.png"
    good.write_bytes(png_bytes(7, 5, seed=2))
    assert probe_image(good) == (7, 5)
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(ImageDecodeError):
        probe_image(garbage)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(png_bytes(64, 64, seed=3)[:200])
    with pytest.raises(ImageDecodeError):
        probe_image(truncated)


def test_probe_image_refuses_decompression_bomb(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(bomb_png_bytes())
    assert bomb.stat().st_size < 100_000
    with pytest.raises(ImageDecodeError, match="decompression bomb"):
        probe_image(bomb)


def test_probe_image_reads_dicom_size(tmp_path):
    from pydicom import Dataset
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.Rows, dataset.Columns = 3, 5
    dataset.SamplesPerPixel, dataset.BitsAllocated, dataset.BitsStored = 1, 8, 8
    dataset.HighBit, dataset.PixelRepresentation = 7, 0
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.PixelData = bytes(15)
    path = tmp_path / "x.dcm"
    dataset.save_as(path, enforce_file_format=True)
    assert probe_image(path) == (5, 3)


def _batch(server, names):
    return [FetchRequest(key=name, url=f"{server.url}/{name}", name=name) for name in names]


def test_fetch_many_reports_per_file_failures_and_goes_on(server, tmp_path):
    images = {f"img{i}.PNG": png_bytes(5 + i, 4, seed=10 + i) for i in range(3)}
    for name, body in images.items():
        server.plan.files[f"/{name}"] = body
    server.plan.files["/corrupt.png"] = b"\x89PNG\r\n\x1a\n garbage"
    server.plan.files["/bomb.png"] = bomb_png_bytes()
    server.plan.files["/short.png"] = images["img0.PNG"]
    server.plan.truncate_to["/short.png"] = 10
    store = ImageStore(tmp_path / "store")
    names = [*images, "corrupt.png", "bomb.png", "short.png", "gone.png"]
    batch = fetch_many(
        _batch(server, names),
        store,
        UrlLedger(tmp_path / "store" / "ledger.jsonl"),
        session=make_session(retries=0),
        workers=3,
        progress=False,
    )
    assert sorted(batch.stored) == sorted(images)
    assert batch.stored["img1.PNG"].width == 6
    assert batch.stored["img1.PNG"].path.suffix == ".png"
    reasons = {failure.key: (failure.stage, failure.reason) for failure in batch.failures}
    assert reasons["gone.png"] == ("download", "HTTP 404")
    assert reasons["short.png"][1].startswith("truncated: got 10 of")
    assert reasons["corrupt.png"][0] == "validate"
    assert reasons["corrupt.png"][1].startswith("undecodable image:")
    # No reason names an internal staging path (the report has the URL).
    assert all(str(tmp_path) not in reason for _, reason in reasons.values())
    assert "decompression bomb" in reasons["bomb.png"][1]
    assert len(reasons) == 4
    # Every byte received counts, also for files that then failed (10 of the truncated body).
    received = sum(map(len, images.values())) + 10
    received += sum(len(server.plan.files[f"/{name}"]) for name in ("corrupt.png", "bomb.png"))
    assert batch.bytes_transferred == received
    failed_bytes = {failure.key: failure.bytes_transferred for failure in batch.failures}
    assert failed_bytes["short.png"] == 10 and failed_bytes["gone.png"] == 0
    assert leftovers(tmp_path) == []
    assert sorted(p.name for p in store.staging_dir.iterdir()) == []


def test_fetch_many_same_url_twice_is_fetched_once(server, tmp_path):
    body = png_bytes(3, 3, seed=5)
    server.plan.files["/same.png"] = body
    requests_ = [
        FetchRequest(key=key, url=f"{server.url}/same.png", name="same.png") for key in "ab"
    ]
    batch = fetch_many(
        requests_,
        ImageStore(tmp_path),
        UrlLedger(tmp_path / "ledger.jsonl"),
        session=make_session(retries=0),
        progress=False,
    )
    assert server.plan.hits["/same.png"] == 1
    assert batch.stored["a"].path == batch.stored["b"].path
    assert batch.bytes_transferred == len(body)


def test_fetch_many_interrupted_run_resumes_and_rerun_transfers_nothing(
    server, tmp_path, monkeypatch
):
    images = {f"{i:03d}.png": png_bytes(6, 6, seed=100 + i) for i in range(6)}
    for name, body in images.items():
        server.plan.files[f"/{name}"] = body
    store = ImageStore(tmp_path / "store")
    ledger_path = tmp_path / "store" / "url_ledger.jsonl"
    session = make_session(retries=0)

    original_put = ImageStore.put
    calls = {"n": 0}

    def put_then_crash(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 2:
            raise KeyboardInterrupt("simulated kill after two files")
        return original_put(self, *args, **kwargs)

    monkeypatch.setattr(ImageStore, "put", put_then_crash)
    with pytest.raises(KeyboardInterrupt):
        fetch_many(
            _batch(server, images),
            store,
            UrlLedger(ledger_path),
            session=session,
            workers=1,
            progress=False,
        )
    monkeypatch.setattr(ImageStore, "put", original_put)
    # Only complete, correctly named files and no partial downloads survive the kill.
    stored_after_kill = list(store.iter_files())
    assert len(stored_after_kill) == 2
    for path in stored_after_kill:
        assert sha(path.read_bytes()) == path.stem
    assert leftovers(tmp_path) == []
    assert list(store.staging_dir.iterdir()) == []
    assert len(ledger_path.read_text().splitlines()) == 2

    resumed = fetch_many(
        _batch(server, images), store, UrlLedger(ledger_path), session=session, progress=False
    )
    assert resumed.failures == []
    assert len(resumed.stored) == 6
    already = {json.loads(line)["url"] for line in ledger_path.read_text().splitlines()[:2]}
    remaining = [name for name in images if f"{server.url}/{name}" not in already]
    assert resumed.bytes_transferred == sum(len(images[name]) for name in remaining)

    hits_before = sum(server.plan.hits.values())
    again = fetch_many(
        _batch(server, images), store, UrlLedger(ledger_path), session=session, progress=False
    )
    assert again.bytes_transferred == 0
    assert sum(server.plan.hits.values()) == hits_before
    assert {key: s.path for key, s in again.stored.items()} == {
        key: s.path for key, s in resumed.stored.items()
    }


def test_fetch_many_redownloads_when_stored_file_vanished(server, tmp_path):
    body = png_bytes(4, 4, seed=7)
    server.plan.files["/v.png"] = body
    store = ImageStore(tmp_path / "s")
    ledger = UrlLedger(tmp_path / "s" / "ledger.jsonl")
    first = fetch_many(_batch(server, ["v.png"]), store, ledger, progress=False)
    first.stored["v.png"].path.unlink()
    second = fetch_many(_batch(server, ["v.png"]), store, ledger, progress=False)
    assert second.bytes_transferred == len(body)
    assert second.stored["v.png"].path.read_bytes() == body


def test_ledger_ignores_a_torn_last_line(tmp_path):
    path = tmp_path / "ledger.jsonl"
    good = {"url": "u", "sha256": "a" * 64, "size": 1, "ext": ".png", "width": 1, "height": 1}
    path.write_text(json.dumps(good) + "\n" + '{"url": "v", "sha2')
    ledger = UrlLedger(path)
    assert len(ledger) == 1
    assert ledger.get("u").sha256 == "a" * 64
    assert ledger.get("v") is None


def test_fetch_many_stores_local_files_without_network(tmp_path):
    local = tmp_path / "extracted" / "CXR_png" / "MCUCXR_0001_0.PNG"
    local.parent.mkdir(parents=True)
    local.write_bytes(png_bytes(9, 8, seed=8))
    batch = fetch_many(
        [FetchRequest(key="k", url="", name=local.name, local_path=str(local))],
        ImageStore(tmp_path / "store"),
        UrlLedger(tmp_path / "store" / "ledger.jsonl"),
        progress=False,
    )
    stored = batch.stored["k"]
    assert (stored.width, stored.height, stored.bytes_transferred) == (9, 8, 0)
    assert stored.path.suffix == ".png" and local.exists()


def test_fetch_many_removes_only_stale_partials(tmp_path):
    import os

    store = ImageStore(tmp_path / "store")
    store.staging_dir.mkdir(parents=True)
    stale = store.staging_dir / ".old.png.abc.part"
    fresh = store.staging_dir / ".new.png.def.part"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"half")
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    fetch_many(
        [FetchRequest(key="k", url="", name="x.png", local_path=str(tmp_path / "absent.png"))],
        store,
        UrlLedger(tmp_path / "ledger.jsonl"),
        progress=False,
    )
    assert not stale.exists() and fresh.exists()


def test_download_progress_bar_counts_bytes_only_when_asked(server, tmp_path, capsys):
    body = bytes(range(256)) * 64
    server.plan.files["/images_001.tar.gz"] = body
    url = f"{server.url}/images_001.tar.gz"
    download_file(url, tmp_path / "quiet.tar.gz", session=make_session(**FAST))
    assert capsys.readouterr().err == ""
    download_file(
        url,
        tmp_path / "a.tar.gz",
        session=make_session(**FAST),
        progress=True,
        description="nih_cxr14 images_001.tar.gz",
    )
    err = capsys.readouterr().err
    assert "nih_cxr14 images_001.tar.gz" in err
    assert "16.0k" in err  # the declared total, in bytes scaled by 1024


def test_archive_files_are_linked_into_the_store_and_stay_for_reruns(tmp_path, monkeypatch):
    import os

    local = tmp_path / "cache" / "extracted" / "CXR_png" / "MCUCXR_0002_0.png"
    local.parent.mkdir(parents=True)
    local.write_bytes(png_bytes(7, 5, seed=9))
    store = ImageStore(tmp_path / "store")
    request = FetchRequest(key="k", url="", name=local.name, local_path=str(local))
    ledger = UrlLedger(tmp_path / "store" / "ledger.jsonl")

    first = fetch_many([request], store, ledger, progress=False).stored["k"]
    # One inode, two names: no byte copied, and the extraction is still complete.
    assert first.path.stat().st_ino == local.stat().st_ino
    again = fetch_many([request], store, ledger, progress=False).stored["k"]
    assert again.path == first.path and again.sha256 == first.sha256 and local.is_file()

    # Where the file system refuses links (another device), the file is copied.
    other = tmp_path / "elsewhere.png"
    other.write_bytes(png_bytes(6, 5, seed=10))

    def refuse(*args, **kwargs):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", refuse)
    copied = store.put(other, ".png", link=True)
    assert copied.read_bytes() == other.read_bytes()
    assert copied.stat().st_ino != other.stat().st_ino
    assert [p.name for p in copied.parent.iterdir() if p.name.startswith(".")] == []


def test_rerun_with_archive_rows_neither_hashes_nor_decodes_again(tmp_path, monkeypatch):
    from covid_cxnet_pipeline import download

    root = tmp_path / "cache" / "extracted"
    requests_ = []
    for index in range(2):
        local = root / "images" / f"0000000{index}_000.png"
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(png_bytes(6 + index, 5, seed=20 + index))
        url = f"https://example.org/images_001.tar.gz#images/{local.name}"
        requests_.append(
            FetchRequest(key=str(index), url=url, name=local.name, local_path=str(local))
        )
    store = ImageStore(tmp_path / "store")
    ledger_path = tmp_path / "store" / "ledger.jsonl"
    first = fetch_many(requests_, store, UrlLedger(ledger_path), progress=False)
    assert sorted(first.stored) == ["0", "1"] and first.failures == []
    assert first.stored["1"].width == 7

    calls = {"probe": 0, "hash": 0}

    def counting_probe(path):
        calls["probe"] += 1
        return probe_image(path)

    real_hash = download.sha256_file

    def counting_hash(path):
        calls["hash"] += 1
        return real_hash(path)

    monkeypatch.setattr(download, "sha256_file", counting_hash)
    again = fetch_many(
        requests_, store, UrlLedger(ledger_path), validate=counting_probe, progress=False
    )
    assert calls == {"probe": 0, "hash": 0}
    assert {k: (v.sha256, v.path, v.width, v.height) for k, v in again.stored.items()} == {
        k: (v.sha256, v.path, v.width, v.height) for k, v in first.stored.items()
    }

    # A ledger hit whose stored file is gone is stored again from the extraction.
    first.stored["0"].path.unlink()
    healed = fetch_many(
        requests_, store, UrlLedger(ledger_path), validate=counting_probe, progress=False
    )
    assert calls == {"probe": 1, "hash": 1}
    assert healed.stored["0"].path.is_file()


def test_undecodable_reason_names_no_staging_path(server, tmp_path):
    server.plan.files["/not_an_image.png"] = b"<html>moved</html>"
    batch = fetch_many(
        _batch(server, ["not_an_image.png"]),
        ImageStore(tmp_path / "store"),
        UrlLedger(tmp_path / "store" / "ledger.jsonl"),
        session=make_session(retries=0),
        progress=False,
    )
    (failure,) = batch.failures
    assert failure.reason == "undecodable image: UnidentifiedImageError: cannot identify image file"


def test_write_atomically_creates_the_folder_replaces_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "new" / "digest.json"
    write_atomically(target, b"first")
    write_atomically(target, b"second")
    assert target.read_bytes() == b"second"
    assert [p.name for p in target.parent.iterdir()] == ["digest.json"]
