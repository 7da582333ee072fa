"""Hannover (ml-workgroup) adapter against a data.csv + png/ layout served on 127.0.0.1."""

from __future__ import annotations

import math

import pytest

from covid_cxnet_pipeline.sources.base import CANDIDATE_COLUMNS, get_adapter
from covid_cxnet_pipeline.sources.hannover_mhh import hannover_sex
from tests.sources_upstream.conftest import fetch_bytes, shared_images

HEADER = (
    "patient_id,image_id,sex,age,size,weight,admission_offset,icu_admission_offset,"
    "icu_release_offset,death_offset,modality,projection,crp_offset,crp_val,d-dimer_offset,"
    "d-dimer_val,factor_xii_offset,factor_xii_val,ldh_offset,ldh_val,lymphocytes_offset,"
    "lymphocytes_val,neutrophils_offset,neutrophils_val,pco2_offset,pco2_val,po2_offset,po2_val"
)
# Verbatim rows of the upstream data.csv (commit 4025ea15).
UPSTREAM_ROWS = [
    "042f06a9,b343e657,m,,,,0,0.0,4.0,,CR,ap,0.0,5.0,,,0.0,145.0,,,,,,,0.0,45.0,0.0,55.0",
    "09ec853d,2168a917,m,,,,-21,-21.0,-11.0,,DX,pa,0.0,44.0,,,,,,,,,,,-6.0,45.0,-6.0,30.0",
    "0a359802,61bc50d1,f,,,,0,0.0,1.0,,CR,ap,0.0,-inf,,,0.0,45.0,,,,,,,0.0,45.0,0.0,40.0",
]
# Rows written for this test: the README's "w" spelling with an age, a non-radiograph modality,
# a hostile image id and a repeated row.
CONSTRUCTED_ROWS = [
    "1c642000,f6575117,w,45,,,-1,,,,DX,pa,0.0,16.0,,,,,4.0,295.0,4.0,1.2,4.0,3.2,0.0,35.0,0.0,60.0",
    "1c642000,ac4f6e4e,f,,,,-5,,,,CT,,0.0,19.0,,,,,0.0,295.0,0.0,1.2,0.0,3.2,0.0,45.0,0.0,25.0",
    "1c642000,../../etc/passwd,f,,,,-5,,,,CR,ap,,,,,,,,,,,,,,,,",
    "042f06a9,b343e657,m,,,,0,0.0,4.0,,CR,ap,0.0,5.0,,,0.0,145.0,,,,,,,0.0,45.0,0.0,55.0",
]
EXPECTED = {  # image_id -> (patient, sex, age, view)
    "b343e657": ("042f06a9", "M", math.nan, "ap"),
    "2168a917": ("09ec853d", "M", math.nan, "pa"),
    "61bc50d1": ("0a359802", "F", math.nan, "ap"),
    "f6575117": ("1c642000", "F", 45.0, "pa"),
}


@pytest.fixture
def hannover_folder(shared_data, tmp_path):
    """data.csv plus png/<image_id>.png; the pixels are real shared X-rays standing in for the
    Hannover originals, which shared leaves out (they overlap the hidden test set)."""
    folder = tmp_path / "ml-workgroup"
    (folder / "png").mkdir(parents=True)
    (folder / "data.csv").write_text("\n".join([HEADER, *UPSTREAM_ROWS, *CONSTRUCTED_ROWS]) + "\n")
    images = shared_images(shared_data, "actualmed_covid", "images/*.png", len(EXPECTED))
    for image_id, source in zip(EXPECTED, images, strict=True):
        (folder / "png" / f"{image_id}.png").write_bytes(source.read_bytes())
    return folder


def test_hannover_rows(hannover_folder, loopback_client):
    client = loopback_client("hannover_mhh", hannover_folder)

    frame = get_adapter("hannover_mhh", {}).list_images(client)

    assert tuple(frame.columns) == CANDIDATE_COLUMNS
    assert sorted(frame["upstream_path"]) == sorted(f"png/{i}.png" for i in EXPECTED)
    for row in frame.itertuples():
        image_id = row.upstream_path.removeprefix("png/").removesuffix(".png")
        patient, sex, age, view = EXPECTED[image_id]
        assert (row.patient_id, row.sex, row.view) == (patient, sex, view)
        assert row.age == age or (math.isnan(age) and math.isnan(row.age))
        assert row.image_id == f"hannover_mhh:{row.upstream_path}"
        assert row.url == client.url(row.upstream_path)
        assert row.local_path == ""
        assert fetch_bytes(row.url) == (hannover_folder / row.upstream_path).read_bytes()
    assert set(frame["label"]) == {"covid"}
    assert set(frame["finding"]) == {"COVID-19"}
    assert set(frame["covid_source"]) == {"hannover"}
    assert set(frame["license"]) == {"CC BY 3.0"}
    assert not frame["is_pediatric_flag"].any()


def test_modalities_null_keeps_every_row(hannover_folder, loopback_client):
    client = loopback_client("hannover_mhh", hannover_folder)
    frame = get_adapter("hannover_mhh", {"modalities": None}).list_images(client)
    assert "png/ac4f6e4e.png" in set(frame["upstream_path"])
    assert len(frame) == 5


def test_wrong_metadata_file_is_a_clear_error(tmp_path, loopback_client):
    (tmp_path / "metadata.csv").write_text("patientid,filename\n1,a.png\n")
    client = loopback_client("hannover_mhh", tmp_path)
    with pytest.raises(ValueError, match=r"ingest\.sources\.hannover_mhh\.metadata_path"):
        get_adapter("hannover_mhh", {"metadata_path": "metadata.csv"}).list_images(client)


@pytest.mark.parametrize(
    ("cell", "sex"), [("m", "M"), ("f", "F"), ("w", "F"), ("W", "F"), ("", ""), ("x", "")]
)
def test_hannover_sex(cell, sex):
    assert hannover_sex(cell) == sex
