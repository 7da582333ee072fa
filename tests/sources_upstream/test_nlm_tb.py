"""Montgomery and Shenzhen adapters against small zips in the NLM layout, served on 127.0.0.1."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image

from covid_cxnet_pipeline.sources.base import (
    CANDIDATE_COLUMNS,
    MASK_CANDIDATE_COLUMNS,
    get_adapter,
)
from covid_cxnet_pipeline.sources.nlm_tb import parse_age_years, parse_clinical_reading
from covid_cxnet_pipeline.sources.protocol import SourceUnavailable
from tests.sources_upstream.conftest import shared_images, write_zip

SEG = "shenzhen_montgomery_seg"


def _png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _split_lungs(mask_path) -> tuple[bytes, bytes]:
    """Split a real two-lung mask into (patient-left, patient-right) masks at the image midline.

    The patient's left lung lies on the image's right half of a frontal radiograph.
    """
    mask = np.asarray(Image.open(mask_path).convert("L"))
    middle = mask.shape[1] // 2
    left, right = mask.copy(), mask.copy()
    left[:, :middle] = 0
    right[:, middle:] = 0
    return _png_bytes(left), _png_bytes(right)


@pytest.fixture
def montgomery_zip(shared_data, tmp_path):
    """MontgomerySet.zip with 3 real Montgomery images (one renamed _0 as the normal case)."""
    images = shared_images(shared_data, SEG, "val_png/MCUCXR_*_1.png", 3)
    masks_dir = shared_data / "mirror" / SEG / "val_masks_png"
    members: dict[str, bytes] = {}
    # Shared holds only TB-positive Montgomery images: the third stands in for a normal case.
    names = [images[0].name, images[1].name, "MCUCXR_0001_0.png"]
    readings = [
        "Patient's Sex: M\nPatient's Age: 045Y\nright upper lobe cavitary TB\n",
        "Patient's Sex: F\nPatient's Age: 027Y\nbilateral infiltrates\n",
        "Patient's Sex: F\nPatient's Age: 058Y\nnormal\n",
    ]
    for source, name, reading in zip(images, names, readings, strict=True):
        stem = name.removesuffix(".png")
        members[f"MontgomerySet/CXR_png/{name}"] = source.read_bytes()
        members[f"MontgomerySet/ClinicalReadings/{stem}.txt"] = reading.encode()
        if name != "MCUCXR_0001_0.png":  # this one has no manual mask: masks are optional
            left, right = _split_lungs(masks_dir / source.name)
            members[f"MontgomerySet/ManualMask/leftMask/{name}"] = left
            members[f"MontgomerySet/ManualMask/rightMask/{name}"] = right
    # Upstream clutter the adapter must ignore.
    members["MontgomerySet/NLM-MontgomeryCXRSet-ReadMe.pdf"] = b"%PDF-1.4"
    members["MontgomerySet/CXR_png/Thumbs.db"] = b"\x00"
    members["__MACOSX/MontgomerySet/CXR_png/._MCUCXR_0001_0.png"] = b"\x00\x05\x16\x07"
    members["MontgomerySet/CXR_png/._MCUCXR_0002_0.png"] = b"\x00\x05\x16\x07"
    folder = tmp_path / "nlm_montgomery"
    folder.mkdir()
    write_zip(folder / "MontgomerySet.zip", members)
    return folder, images, members


def test_montgomery_rows_and_masks(montgomery_zip, loopback_client):
    folder, images, members = montgomery_zip
    client = loopback_client("montgomery", folder)
    adapter = get_adapter("montgomery", {"archive": "MontgomerySet.zip", "view": "PA"})

    frame = adapter.list_images(client)

    assert tuple(frame.columns) == CANDIDATE_COLUMNS
    assert len(frame) == 3
    rows = frame.set_index("patient_id")
    tb_stem = images[0].stem.removesuffix("_1")
    assert rows.loc[tb_stem, "label"] == "other"
    assert rows.loc[tb_stem, "sex"] == "M"
    assert rows.loc[tb_stem, "age"] == 45.0
    assert rows.loc[tb_stem, "finding"] == "right upper lobe cavitary TB"
    assert rows.loc[tb_stem, "flags"] == "tuberculosis"
    normal = rows.loc["MCUCXR_0001"]
    assert normal["label"] == "normal"
    assert (normal["sex"], normal["age"], normal["view"]) == ("F", 58.0, "PA")
    member = "MontgomerySet/CXR_png/MCUCXR_0001_0.png"
    assert normal["image_id"] == f"montgomery:{member}"
    assert normal["upstream_path"] == member
    assert normal["url"] == client.url("MontgomerySet.zip") + "#" + member
    assert set(frame["covid_source"]) == {"not_covid_source"}
    assert not frame["is_pediatric_flag"].any()
    for row in frame.itertuples():
        with open(row.local_path, "rb") as handle:
            assert handle.read() == members[row.upstream_path]

    masks = adapter.list_masks(client, frame)

    assert tuple(masks.columns) == MASK_CANDIDATE_COLUMNS
    assert len(masks) == 4  # two images x two lungs; the normal case has no mask
    assert sorted(masks["structure"]) == ["left_lung", "left_lung", "right_lung", "right_lung"]
    assert set(masks["image_id"]) == set(frame["image_id"]) - {f"montgomery:{member}"}
    assert (masks["offset_top"] == 0).all() and (masks["offset_left"] == 0).all()
    assert not masks["scale_to_image"].any()
    left = masks[masks["structure"] == "left_lung"].iloc[0]
    assert "/ManualMask/leftMask/" in left["url"]
    with open(left["local_path"], "rb") as handle:
        assert handle.read() == members[left["url"].split("#", 1)[1]]
    assert client.archive_calls == ["MontgomerySet.zip"]  # list_masks reuses list_images' one


def test_a_missing_archive_is_reported_and_the_other_is_used(montgomery_zip, loopback_client):
    folder, _, _ = montgomery_zip
    client = loopback_client("montgomery", folder)
    adapter = get_adapter("montgomery", {"archive": ["MontgomerySet.zip", "Missing.zip"]})

    frame = adapter.list_images(client)
    masks = adapter.list_masks(client, frame)

    assert len(frame) == 3 and len(masks) == 4
    assert frame["url"].str.startswith(client.url("MontgomerySet.zip") + "#").all()
    assert len(adapter.failures) == 1  # not twice, although list_masks asked again
    failure = adapter.failures[0]
    assert (failure["url"], failure["stage"]) == (client.url("Missing.zip"), "archive")
    assert "404" in failure["reason"]


def test_every_archive_missing_makes_the_source_unavailable(montgomery_zip, loopback_client):
    folder, _, _ = montgomery_zip
    client = loopback_client("montgomery", folder)
    adapter = get_adapter("montgomery", {"archive": ["Missing.zip", "Gone.zip"]})
    with pytest.raises(SourceUnavailable, match=r"none of its 2 archive.*Missing\.zip.*Gone\.zip"):
        adapter.list_images(client)
    assert [failure["stage"] for failure in adapter.failures] == ["archive", "archive"]


def test_montgomery_through_the_http_client(montgomery_zip, http_source_client):
    folder, _, members = montgomery_zip
    client = http_source_client("montgomery", folder)
    adapter = get_adapter("montgomery", {"archive": "MontgomerySet.zip"})

    frame = adapter.list_images(client)
    masks = adapter.list_masks(client, frame)

    assert len(frame) == 3 and len(masks) == 4
    for path, member in zip(masks["local_path"], masks["url"].str.split("#").str[1], strict=True):
        with open(path, "rb") as handle:
            assert handle.read() == members[member]


def test_shenzhen_rows_without_masks(shared_data, tmp_path, loopback_client):
    images = shared_images(shared_data, SEG, "train_png/CHNCXR_*_1.png", 2)
    readings = ["male 35yrs\nPTB in the left upper field\n", "femal 16month\nSTB\n"]
    members = {}
    for source, reading in zip(images, readings, strict=True):
        members[f"ChinaSet_AllFiles/CXR_png/{source.name}"] = source.read_bytes()
        members[f"ChinaSet_AllFiles/ClinicalReadings/{source.stem}.txt"] = reading.encode()
    members["ChinaSet_AllFiles/NLM-ChinaCXRSet-ReadMe.docx"] = b"PK"
    folder = tmp_path / "nlm_shenzhen"
    folder.mkdir()
    write_zip(folder / "ChinaSet_AllFiles.zip", members)
    client = loopback_client("shenzhen", folder)
    adapter = get_adapter("shenzhen", {"archive": "ChinaSet_AllFiles.zip"})

    frame = adapter.list_images(client)

    assert list(frame["patient_id"]) == [p.stem.removesuffix("_1") for p in images]
    assert list(frame["sex"]) == ["M", "F"]
    assert frame["age"].tolist() == pytest.approx([35.0, 16.0 / 12.0])
    assert list(frame["finding"]) == ["PTB in the left upper field", "STB"]
    assert set(frame["label"]) == {"other"}
    assert set(frame["view"]) == {""}
    assert adapter.list_masks(client, frame).empty


def test_missing_archive_key_names_the_parameter(tmp_path, loopback_client):
    client = loopback_client("shenzhen", tmp_path)
    with pytest.raises(ValueError, match=r"ingest\.sources\.shenzhen\.archive"):
        get_adapter("shenzhen", {}).list_images(client)


def test_archive_without_nlm_layout_is_a_clear_error(tmp_path, loopback_client):
    write_zip(tmp_path / "MontgomerySet.zip", {"MontgomerySet/readme.txt": b"nothing"})
    client = loopback_client("montgomery", tmp_path)
    with pytest.raises(ValueError, match="no CXR_png/ images"):
        get_adapter("montgomery", {"archive": "MontgomerySet.zip"}).list_images(client)


@pytest.mark.parametrize(
    ("text", "years"),
    [
        ("045Y", 45.0),
        ("male 35yrs", 35.0),
        ("male 16month", 16.0 / 12.0),
        ("female 64days", 64.0 / 365.25),
        ("006M", 0.5),
        ("Male 35 yrs", 35.0),
    ],
)
def test_parse_age_years(text, years):
    assert parse_age_years(text) == pytest.approx(years)


def test_parse_age_years_unknown_is_nan():
    assert math.isnan(parse_age_years("male"))
    assert math.isnan(parse_age_years(""))


def test_parse_clinical_reading_formats():
    montgomery = parse_clinical_reading("Patient's Sex: F\nPatient's Age: 027Y\nnormal\n")
    assert montgomery == {"sex": "F", "age": 27.0, "reading": "normal"}
    shenzhen = parse_clinical_reading("Male 35yrs  STB, ATB\n\n")
    assert shenzhen == {"sex": "M", "age": 35.0, "reading": "STB, ATB"}
    typo = parse_clinical_reading("femal 32yrs\nnormal")
    assert (typo["sex"], typo["age"]) == ("F", 32.0)
