"""The ieee8023 metadata schema: tiny files in both versions, and the real GeneralBlockchain copy."""

from __future__ import annotations

import math

import pytest

from covid_cxnet_pipeline.sources.ieee8023_schema import (
    ieee8023_candidates,
    ieee8023_fields,
    read_ieee8023_metadata,
)

# Aug 2020 schema (abridged): trailing empty header column, a quoted multi-line note.
AUG_2020 = (
    "patientid,offset,sex,age,finding,view,modality,folder,filename,url,license,clinical_notes,\n"
    '2,0,M,65,COVID-19,PA,X-ray,images,a.jpeg,https://www.nejm.org/x,,"first line\n'
    'second line, with a comma",\n'
    "3,4,F,,SARS,AP,X-ray,images,b.png,https://radiopaedia.org/cases/x,CC BY-NC-SA,,\n"
    "4,,,,todo,AP Supine,X-ray,images,c.jpg,,,,\n"
)
# Live schema (abridged): hierarchical findings, CT rows in another folder.
LIVE = (
    "patientid,sex,age,finding,RT_PCR_positive,view,modality,folder,filename,url,license,\n"
    "7,F,30,Pneumonia/Viral/COVID-19,Y,L,X-ray,images,d.jpg,,,\n"
    "8,M,50,Pneumonia/Lipoid,,PA,X-ray,images,e.jpg,,,\n"
    "9,M,50,Pneumonia/Viral/COVID-19,Y,Axial,CT,volumes,f.nii.gz,,,\n"
)


class _Client:
    source_id = "toy"
    base_url = "http://mirror.test/toy/"

    def url(self, relpath: str) -> str:
        return self.base_url + relpath


def _read(tmp_path, text):
    path = tmp_path / "metadata.csv"
    path.write_text(text, encoding="utf-8")
    return read_ieee8023_metadata(path, "toy")


def test_aug_2020_schema_rows(tmp_path):
    metadata = _read(tmp_path, AUG_2020)
    assert len(metadata) == 3
    assert metadata.loc[0, "clinical_notes"] == "first line\nsecond line, with a comma"
    files = ["images/a.jpeg", "images/b.png", "images/c.jpg", "images/extra.jpg", "README.md"]
    frame = ieee8023_candidates(
        metadata, files, _Client(), source_id="toy", default_license="CC BY 4.0"
    ).set_index("upstream_path")
    assert frame.loc[
        "images/a.jpeg", ["patient_id", "sex", "view", "label", "finding"]
    ].tolist() == [
        "2",
        "M",
        "PA",
        "covid",
        "COVID-19",
    ]
    assert frame.loc["images/a.jpeg", "age"] == 65.0
    assert frame.loc["images/a.jpeg", "license"] == "CC BY 4.0"  # blank cell: repository licence
    assert frame.loc["images/b.png", "license"] == "CC BY-NC-SA"
    assert frame.loc["images/b.png", "label"] == "cap" and math.isnan(
        frame.loc["images/b.png", "age"]
    )
    assert frame.loc["images/c.jpg", "label"] == "other"
    # a listed image without a metadata row is kept, unlabelled
    assert frame.loc["images/extra.jpg", ["label", "finding"]].tolist() == ["other", ""]
    assert set(frame["covid_source"]) == {"cohen_ieee8023"}


def test_rows_without_files_are_skipped(tmp_path):
    metadata = _read(tmp_path, AUG_2020)
    frame = ieee8023_candidates(
        metadata, ["images/a.jpeg"], _Client(), source_id="toy", default_license=""
    )
    assert frame["upstream_path"].tolist() == ["images/a.jpeg"]
    trusted = ieee8023_candidates(metadata, None, _Client(), source_id="toy", default_license="")
    assert len(trusted) == 3


def test_live_schema_skips_other_modalities(tmp_path):
    metadata = _read(tmp_path, LIVE)
    files = ["images/d.jpg", "images/e.jpg", "volumes/f.nii.gz"]
    frame = ieee8023_candidates(metadata, files, _Client(), source_id="toy", default_license="")
    assert frame.set_index("upstream_path")["label"].to_dict() == {
        "images/d.jpg": "covid",
        "images/e.jpg": "other",
    }


def test_covid_source_from_url():
    record = {"finding": "COVID-19", "url": "https://radiopaedia.org/cases/x"}
    assert ieee8023_fields(record, default_license="")["covid_source"] == "cohen_ieee8023"
    by_url = ieee8023_fields(record, default_license="", covid_source_from_url=True)
    assert by_url["covid_source"] == "radiopaedia"
    unknown_url = {"finding": "COVID-19", "url": "https://example.com/x"}
    fallback = ieee8023_fields(unknown_url, default_license="", covid_source_from_url=True)
    assert fallback["covid_source"] == "cohen_ieee8023"


def test_missing_columns_name_the_file(tmp_path):
    path = tmp_path / "metadata.csv"
    path.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(ValueError, match="lacks the ieee8023 columns"):
        read_ieee8023_metadata(path, "toy")


def test_real_generalblockchain_metadata(shared_data):
    metadata = read_ieee8023_metadata(
        shared_data / "mirror" / "gb_ieee8023_bbox" / "metadata.csv", "gb_ieee8023_bbox"
    )
    # 174 records despite multi-line notes; the trailing header column is kept only because two
    # rows (patient 318) put an Elsevier notice in it.
    assert len(metadata) == 174
    assert metadata["finding"].str.len().gt(0).all()


def test_malformed_url_cell_falls_back_and_names_the_row(tmp_path, caplog):
    text = (
        "patientid,finding,view,modality,folder,filename,url\n"
        "1,COVID-19,PA,X-ray,images,a.jpg,http://[bad\n"
        "2,COVID-19,PA,X-ray,images,b.jpg,https://radiopaedia.org/cases/x\n"
    )
    metadata = _read(tmp_path, text)
    with caplog.at_level("WARNING"):
        frame = ieee8023_candidates(
            metadata,
            ["images/a.jpg", "images/b.jpg"],
            _Client(),
            source_id="toy",
            default_license="",
            covid_source_from_url=True,
        ).set_index("upstream_path")
    assert frame["covid_source"].to_dict() == {
        "images/a.jpg": "cohen_ieee8023",
        "images/b.jpg": "radiopaedia",
    }
    assert "toy: metadata row 1 (images/a.jpg)" in caplog.text
