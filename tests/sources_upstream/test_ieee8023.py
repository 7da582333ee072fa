"""ieee8023 adapter against metadata.csv (live schema) + images/ served on 127.0.0.1."""

from __future__ import annotations

import csv
import io
import math

import pytest

from covid_cxnet_pipeline.sources.base import CANDIDATE_COLUMNS, get_adapter
from tests.sources_upstream.conftest import fetch_bytes

HEADER = (
    "patientid,offset,sex,age,finding,RT_PCR_positive,survival,intubated,intubation_present,"
    "went_icu,in_icu,needed_supplemental_O2,extubated,temperature,pO2_saturation,"
    "leukocyte_count,neutrophil_count,lymphocyte_count,view,modality,date,location,folder,"
    "filename,doi,url,license,clinical_notes,other_notes,"
)
# Verbatim rows of the live metadata.csv (commit 6a424234): a PA COVID-19 case, SARS (AP), a
# lateral, a CT slice in images/, a Radiopaedia case, its CT volume, a normal CXR (EuroRad),
# a Hannover copy with finding "Unknown", and the Wikipedia ARDS image.
ROWS = [
    '4,5,F,52,Pneumonia/Viral/COVID-19,Y,,N,N,N,N,N,,,,,,,PA,X-ray,"January 30, 2020","Changhua '
    'Christian Hospital, Changhua City, Taiwan ",images,nejmc2001573_f1b.jpeg,10.1056/NEJMc2001573,'
    "https://www.nejm.org/doi/full/10.1056/NEJMc2001573,,progressive diffuse interstitial "
    "opacities and consolidation in the bilateral parahilar areas and lower lung fields,,",
    '3,4,M,74,Pneumonia/Viral/SARS,,N,,,,,,,38,,,,,AP,X-ray,2004,"Mount Sinai Hospital, Toronto, '
    'Ontario, Canada",images,SARS-10.1148rg.242035193-g04mr34g0-Fig8a-day0.jpeg,'
    "10.1148/rg.242035193,https://pubs.rsna.org/doi/10.1148/rg.242035193,,SARS in a 74-year-old "
    "man who developed symptoms 4 days after exposure. Initial anteroposterior chest radiograph "
    "shows bilateral airspace disease that is more extensive in the left lung.,,",
    '13,4,M,35,Pneumonia/Viral/COVID-19,Y,Y,N,N,N,N,Y,,,,,,,L,X-ray,"January 19, 2020","Snohomish '
    'County, Washington, United States",images,nejmoa2001191_f1-L.jpeg,10.1056/NEJMoa2001191,'
    'https://www.nejm.org/doi/full/10.1056/NEJMoa2001191,,"On January 19, 2020, a 35-year-old man '
    "presented to an urgent care clinic in Snohomish County, Washington, with a 4-day history of "
    'cough and subjective fever. No thoracic abnormalities were noted.",,',
    '17,9,M,54,Pneumonia/Viral/COVID-19,Y,Y,,,,,,,,,,,,Axial,CT,"January 31, 2020","Myongji '
    'Hospital, Goyang, South Korea",images,jkms-35-e79-g001-l-d.jpg,10.3346/jkms.2020.35.e79,'
    "https://www.jkms.org/DOIx.php?id=10.3346/jkms.2020.35.e79,CC BY-NC-SA,Small consolidation in "
    "right upper lobe and ground-glass opacities in both lower lobes were observed on "
    "high-resolution computed tomography scan,,",
    '22,10,M,70,Pneumonia/Viral/COVID-19,Y,,,,,,,,,,,,,PA,X-ray,2020,"Riccione, Italy",images,'
    "covid-19-pneumonia-7-PA.jpg,,https://radiopaedia.org/cases/covid-19-pneumonia-7,CC BY-NC-SA,"
    '"Fever, cough, breathing difficulties for about ten days. Vertical air space consolidation '
    'along the left costal margin.","Case courtesy of Dr Domenico Nicoletti, Radiopaedia.org, '
    'rID: 74724",',
    '22,10,M,70,Pneumonia/Viral/COVID-19,Y,,,,,,,,,,,,,Axial,CT,2020,"Riccione, Italy",volumes,'
    "radiopaedia_org_covid-19-pneumonia-7_85703_0-dcm.nii.gz,,"
    "https://radiopaedia.org/cases/covid-19-pneumonia-7,CC BY-NC-SA,"
    '"There are large areas of ground glass opacities in the lower right lobe, in the upper '
    "lobes, with interlobular septal thickening in the subpleural area. Paraseptal emphysema is "
    'present in the upper lobes. No evidence of mediastinal adenopathy.","Case courtesy of Dr '
    'Domenico Nicoletti, Radiopaedia.org, rID: 74724",',
    '210,,M,27,No Finding,Y,Y,N,N,,,,,,,,,,PA,X-ray,,"Humanitas Clinical and Research Hospital, '
    'Rozzano, Milan, Italy",images,16745_2_1.PNG,,https://www.eurorad.org/case/16745,'
    "CC BY-NC-SA 4.0,Patient 1 \u2013 CXR: Normal,,",
    '221,-10,M,,Unknown,Unclear,Y,,,Y,N,,,,,,,,AP Supine,X-ray,2020,"Hannover Medical School, '
    'Hannover, Germany",images,a4318ac9.jpg,10.6084/m9.figshare.12275009,'
    "https://github.com/ml-workgroup/covid-19-image-repository,CC BY 3.0,,,",
    "5,,,,Pneumonia,,,Y,Y,Y,Y,,,,,,,,PA,X-ray,2017,,images,ARDSSevere.png,,"
    "https://en.wikipedia.org/wiki/File:ARDSSevere.png,CC BY-SA,Severe ARDS. Person is intubated "
    "with an OG in place.,,",
]
# filename -> (patient, label, view, sex, age, license) for the X-ray rows.
EXPECTED = {
    "nejmc2001573_f1b.jpeg": ("4", "covid", "PA", "F", 52.0, ""),
    "SARS-10.1148rg.242035193-g04mr34g0-Fig8a-day0.jpeg": ("3", "cap", "AP", "M", 74.0, ""),
    "nejmoa2001191_f1-L.jpeg": ("13", "covid", "L", "M", 35.0, ""),
    "covid-19-pneumonia-7-PA.jpg": ("22", "covid", "PA", "M", 70.0, "CC BY-NC-SA"),
    "16745_2_1.PNG": ("210", "normal", "PA", "M", 27.0, "CC BY-NC-SA 4.0"),
    "a4318ac9.jpg": ("221", "other", "AP Supine", "M", math.nan, "CC BY 3.0"),
    "ARDSSevere.png": ("5", "cap", "PA", "", math.nan, "CC BY-SA"),
}
# The X-rays kept in shared (GeneralBlockchain's copies of these ieee8023 images).
IN_SHARED = (
    "nejmc2001573_f1b.jpeg",
    "SARS-10.1148rg.242035193-g04mr34g0-Fig8a-day0.jpeg",
    "covid-19-pneumonia-7-PA.jpg",
    "16745_2_1.PNG",
)


@pytest.fixture
def ieee8023_folder(shared_data, tmp_path):
    """metadata.csv with real rows, and images/ holding the real shared copies of four of them."""
    text = "\n".join([HEADER, *ROWS]) + "\n"
    parsed = list(csv.reader(io.StringIO(text)))
    assert {len(row) for row in parsed} == {30}, "every row has the header's 30 fields"
    folder = tmp_path / "covid-chestxray-dataset"
    (folder / "images").mkdir(parents=True)
    (folder / "metadata.csv").write_text(text, encoding="utf-8")
    for name in IN_SHARED:
        source = shared_data / "mirror" / "gb_ieee8023_bbox" / "images" / name
        (folder / "images" / name).write_bytes(source.read_bytes())
    return folder


def _check_row(row, expected) -> None:
    patient, label, view, sex, age, license_ = expected
    assert (row.patient_id, row.label, row.view, row.sex, row.license) == (
        patient,
        label,
        view,
        sex,
        license_,
    )
    assert row.age == age or (math.isnan(age) and math.isnan(row.age))


def test_ieee8023_xray_rows(ieee8023_folder, loopback_client):
    client = loopback_client("ieee8023", ieee8023_folder)

    frame = get_adapter("ieee8023", {}).list_images(client)

    assert tuple(frame.columns) == CANDIDATE_COLUMNS
    assert sorted(frame["upstream_path"]) == sorted(f"images/{name}" for name in EXPECTED)
    for row in frame.itertuples():
        _check_row(row, EXPECTED[row.upstream_path.removeprefix("images/")])
        assert row.image_id == f"ieee8023:{row.upstream_path}"
        assert row.url == client.url(row.upstream_path)
        assert row.local_path == ""
    assert set(frame["covid_source"]) == {"cohen_ieee8023"}
    assert set(frame["finding"]) >= {"Pneumonia/Viral/COVID-19", "No Finding", "Unknown"}
    assert not frame["is_pediatric_flag"].any()
    urls = dict(zip(frame["upstream_path"], frame["url"], strict=True))
    for name in IN_SHARED:
        body = fetch_bytes(urls[f"images/{name}"])
        assert body == (ieee8023_folder / "images" / name).read_bytes()


def test_covid_source_from_url(ieee8023_folder, loopback_client):
    client = loopback_client("ieee8023", ieee8023_folder)
    frame = get_adapter("ieee8023", {"covid_source_from_url": True}).list_images(client)
    sources = dict(zip(frame["upstream_path"], frame["covid_source"], strict=True))
    assert sources["images/covid-19-pneumonia-7-PA.jpg"] == "radiopaedia"
    assert sources["images/16745_2_1.PNG"] == "eurorad"
    assert sources["images/a4318ac9.jpg"] == "hannover"
    assert sources["images/nejmc2001573_f1b.jpeg"] == "papers"
    assert sources["images/ARDSSevere.png"] == "cohen_ieee8023"  # wikipedia: no rule


def test_all_modalities_keeps_ct_slices_but_never_volumes(ieee8023_folder, loopback_client):
    client = loopback_client("ieee8023", ieee8023_folder)
    frame = get_adapter("ieee8023", {"modalities": None}).list_images(client)
    paths = set(frame["upstream_path"])
    assert "images/jkms-35-e79-g001-l-d.jpg" in paths
    assert not any(path.startswith("volumes/") for path in paths)
    assert len(frame) == len(EXPECTED) + 1


def test_listing_drops_absent_files_and_adds_unlisted_images(ieee8023_folder, loopback_client):
    extra = ieee8023_folder / "images" / "unlisted-in-metadata.jpg"
    extra.write_bytes((ieee8023_folder / "images" / IN_SHARED[0]).read_bytes())
    client = loopback_client("ieee8023", ieee8023_folder, listing=True)

    frame = get_adapter("ieee8023", {"listing": "github_tree"}).list_images(client)

    rows = frame.set_index("upstream_path")
    assert set(rows.index) == {f"images/{name}" for name in IN_SHARED} | {
        "images/unlisted-in-metadata.jpg"
    }
    assert rows.loc["images/unlisted-in-metadata.jpg", "label"] == "other"


def test_unsafe_filenames_are_refused(ieee8023_folder, loopback_client):
    hostile = ROWS[0].replace("images,nejmc2001573_f1b.jpeg", "images,../../../etc/passwd.jpg")
    absolute = ROWS[0].replace("images,nejmc2001573_f1b.jpeg", ",/etc/shadow.png")
    text = "\n".join([HEADER, hostile, absolute, ROWS[1]]) + "\n"
    (ieee8023_folder / "metadata.csv").write_text(text, encoding="utf-8")
    client = loopback_client("ieee8023", ieee8023_folder)
    frame = get_adapter("ieee8023", {}).list_images(client)
    assert list(frame["upstream_path"]) == [f"images/{IN_SHARED[1]}"]


def test_not_an_ieee8023_metadata_file_is_a_clear_error(tmp_path, loopback_client):
    (tmp_path / "metadata.csv").write_text("patient_id,image_id\n1,a\n")
    client = loopback_client("ieee8023", tmp_path)
    with pytest.raises(ValueError, match="lacks the ieee8023 columns"):
        get_adapter("ieee8023", {}).list_images(client)
