"""Kermany adapter against a small ChestXRay2017.zip in the Mendeley layout, on 127.0.0.1."""

from __future__ import annotations

import io
import math

import pandas as pd
import pytest
from PIL import Image

from covid_cxnet_pipeline.sources.base import CANDIDATE_COLUMNS, get_adapter
from covid_cxnet_pipeline.sources.kermany import parse_member
from tests.sources_upstream.conftest import write_zip

# Upstream member names (Mendeley ChestXRay2017.zip) and what the adapter must make of them.
MEMBERS = {
    "chest_xray/train/NORMAL/IM-0115-0001.jpeg": ("normal", "IM-0115", "NORMAL"),
    "chest_xray/train/NORMAL/NORMAL2-IM-1427-0001.jpeg": ("normal", "NORMAL2-IM-1427", "NORMAL"),
    "chest_xray/train/PNEUMONIA/person1_bacteria_1.jpeg": ("cap", "person1", "PNEUMONIA/bacteria"),
    "chest_xray/test/PNEUMONIA/person1_virus_6.jpeg": ("other", "person1", "PNEUMONIA/virus"),
    "chest_xray/val/PNEUMONIA/person1946_bacteria_4874.jpeg": (
        "cap",
        "person1946",
        "PNEUMONIA/bacteria",
    ),
}


@pytest.fixture
def kermany_folder(shared_data, tmp_path):
    """A ChestXRay2017.zip whose images are real pediatric shared X-rays re-encoded as JPEG."""
    manifest = pd.read_csv(shared_data / "manifest.csv", dtype=str, keep_default_na=False)
    pediatric = manifest[(manifest["kind"] == "image") & (manifest["is_pediatric"] == "true")]
    paths = sorted(pediatric["path"])[: len(MEMBERS)]
    if len(paths) < len(MEMBERS):
        pytest.skip("needs 5 pediatric images in shared/data")
    members = {}
    for name, path in zip(MEMBERS, paths, strict=True):
        buffer = io.BytesIO()
        Image.open(shared_data / path).convert("L").save(buffer, format="JPEG", quality=90)
        members[name] = buffer.getvalue()
    # Mendeley's zip was made on a Mac: resource forks and Finder files ride along.
    members["__MACOSX/chest_xray/train/NORMAL/._IM-0115-0001.jpeg"] = b"\x00\x05\x16\x07"
    members["chest_xray/train/NORMAL/.DS_Store"] = b"\x00\x00\x00\x01Bud1"
    members["chest_xray/train/NORMAL/._IM-0117-0001.jpeg"] = b"\x00\x05\x16\x07"
    members["chest_xray/README.jpeg"] = members["chest_xray/train/NORMAL/IM-0115-0001.jpeg"]
    folder = tmp_path / "mendeley"
    folder.mkdir()
    write_zip(folder / "ChestXRay2017.zip", members)
    return folder, members


def test_kermany_rows(kermany_folder, loopback_client):
    folder, members = kermany_folder
    client = loopback_client("kermany", folder)
    adapter = get_adapter("kermany", {"archive": "ChestXRay2017.zip", "view": "AP"})

    frame = adapter.list_images(client)

    assert tuple(frame.columns) == CANDIDATE_COLUMNS
    assert sorted(frame["upstream_path"]) == sorted(MEMBERS)
    for row in frame.itertuples():
        label, patient, finding = MEMBERS[row.upstream_path]
        assert (row.label, row.patient_id, row.finding) == (label, patient, finding)
        assert row.image_id == f"kermany:{row.upstream_path}"
        assert row.url == client.url("ChestXRay2017.zip") + "#" + row.upstream_path
        assert row.is_pediatric_flag
        assert math.isnan(row.age)
        assert (row.sex, row.view, row.covid_source) == ("", "AP", "not_covid_source")
        assert row.license == "CC BY 4.0"
        with open(row.local_path, "rb") as handle:
            assert handle.read() == members[row.upstream_path]
    flags = dict(zip(frame["upstream_path"], frame["flags"], strict=True))
    assert (
        flags["chest_xray/test/PNEUMONIA/person1_virus_6.jpeg"] == "pediatric;viral;upstream_test"
    )
    assert flags["chest_xray/train/NORMAL/IM-0115-0001.jpeg"] == "pediatric;upstream_train"


def test_mendeley_download_url_through_the_http_client(kermany_folder, http_source_client):
    """Mendeley serves the zip as .../files/<uuid>/file_downloaded: no extension to go by."""
    folder, members = kermany_folder
    served = folder / "files" / "f12eaf6d-6023-432f-acc9-80c9d7393433" / "file_downloaded"
    served.parent.mkdir(parents=True)
    (folder / "ChestXRay2017.zip").rename(served)
    client = http_source_client("kermany", folder)
    archive = "files/f12eaf6d-6023-432f-acc9-80c9d7393433/file_downloaded"

    frame = get_adapter("kermany", {"archive": archive}).list_images(client)

    assert sorted(frame["upstream_path"]) == sorted(MEMBERS)
    assert frame["url"].str.startswith(client.url(archive) + "#").all()
    for row in frame.itertuples():
        with open(row.local_path, "rb") as handle:
            assert handle.read() == members[row.upstream_path]


def test_viral_label_is_configurable(kermany_folder, loopback_client):
    folder, _ = kermany_folder
    client = loopback_client("kermany", folder)
    config = {"archive": "ChestXRay2017.zip", "viral_label": "cap"}
    frame = get_adapter("kermany", config).list_images(client)
    assert frame["label"].value_counts().to_dict() == {"cap": 3, "normal": 2}
    with pytest.raises(ValueError, match=r"ingest\.sources\.kermany\.viral_label"):
        get_adapter(
            "kermany", {"archive": "ChestXRay2017.zip", "viral_label": "viral"}
        ).list_images(client)


def test_archive_without_the_layout_is_a_clear_error(tmp_path, loopback_client):
    write_zip(tmp_path / "ChestXRay2017.zip", {"OCT2017/train/CNV/CNV-1-1.jpeg": b"\xff\xd8"})
    client = loopback_client("kermany", tmp_path)
    with pytest.raises(ValueError, match="no chest_xray/<split>/<NORMAL|PNEUMONIA>/ images"):
        get_adapter("kermany", {"archive": "ChestXRay2017.zip"}).list_images(client)


def test_missing_archive_key_names_the_parameter(tmp_path, loopback_client):
    with pytest.raises(KeyError, match=r"ingest\.sources\.kermany\.archive"):
        get_adapter("kermany", {}).list_images(loopback_client("kermany", tmp_path))


@pytest.mark.parametrize(
    ("member", "expected"),
    [
        (
            "chest_xray/train/PNEUMONIA/person1000_virus_1681.jpeg",
            {"split": "train", "cls": "PNEUMONIA", "kind": "virus", "patient": "person1000"},
        ),
        (
            "chest_xray/test/NORMAL/IM-0001-0001.jpeg",
            {"split": "test", "cls": "NORMAL", "kind": "", "patient": "IM-0001"},
        ),
        (
            "chest_xray/train/PNEUMONIA/odd-name.jpeg",
            {"split": "train", "cls": "PNEUMONIA", "kind": "", "patient": ""},
        ),
        ("chest_xray/PNEUMONIA/person1_bacteria_1.jpeg", None),
        ("chest_xray/train/OTHER/person1_bacteria_1.jpeg", None),
    ],
)
def test_parse_member(member, expected):
    assert parse_member(member) == expected
