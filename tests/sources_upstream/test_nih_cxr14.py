"""NIH ChestX-ray14 adapter against the real label file and small images_00N.tar.gz archives."""

from __future__ import annotations

import gzip
import io

import pandas as pd
import pytest

from covid_cxnet_pipeline.sources.base import CANDIDATE_COLUMNS, get_adapter
from tests.sources_upstream.conftest import write_tar_gz

TXV_LABELS = "mirror/nih_metadata_txv/torchxrayvision/data/Data_Entry_2017_v2020.csv.gz"
DARK = "mirror/darkcovidnet_nih/X-Ray Image DataSet"
# Real NIH images kept in shared, chosen for their labels: two "No Finding" (one a 14-year-old),
# two with "Pneumonia" among co-labels, one with a 17-year-old pneumonia patient.
ARCHIVE_1 = ("No_findings/00001308_002.png", "Pneumonia/00000261_002.png")
ARCHIVE_2 = ("Pneumonia/00000468_040.png", "Pneumonia/00000831_001.png")


def _label_rows(shared_data, names: list[str]) -> pd.DataFrame:
    table = pd.read_csv(shared_data / TXV_LABELS, dtype=str, keep_default_na=False)
    return table[table["Image Index"].isin(names)]


@pytest.fixture
def nih_folder(shared_data, tmp_path):
    """A base folder with Data_Entry_2017_v2020.csv(.gz) and two image archives."""
    picked = [*ARCHIVE_1, *ARCHIVE_2]
    for relpath in picked:
        if not (shared_data / DARK / relpath).is_file():
            pytest.skip(f"needs shared {DARK}/{relpath}")
    names = [relpath.split("/")[-1] for relpath in picked]
    folder = tmp_path / "nih"
    folder.mkdir()
    gz_text = gzip.decompress((shared_data / TXV_LABELS).read_bytes()).decode()
    header = gz_text.splitlines()[0]
    rows = [line for line in gz_text.splitlines()[1:] if line.split(",")[0] in names]
    assert len(rows) == 4, "the shared label file must describe the fixture images"
    (folder / "Data_Entry_2017_v2020.csv").write_text("\n".join([header, *rows]) + "\n")
    (folder / "Data_Entry_2017_v2020.csv.gz").write_bytes(
        gzip.compress(("\n".join([header, *rows]) + "\n").encode())
    )
    archives = {}
    for archive_name, relpaths in (
        ("images_001.tar.gz", ARCHIVE_1),
        ("images_002.tar.gz", ARCHIVE_2),
    ):
        members = {
            f"images/{r.split('/')[-1]}": (shared_data / DARK / r).read_bytes() for r in relpaths
        }
        archives[archive_name] = members
    # An image the label file does not describe (stand-in bytes of a real image) is skipped.
    archives["images_002.tar.gz"]["images/99999999_000.png"] = next(
        iter(archives["images_001.tar.gz"].values())
    )
    for archive_name, members in archives.items():
        write_tar_gz(folder / archive_name, members)
    return folder, archives


def test_nih_rows_from_two_archives(shared_data, nih_folder, loopback_client):
    folder, archives = nih_folder
    client = loopback_client("nih_cxr14", folder)
    config = {
        "metadata_path": "Data_Entry_2017_v2020.csv.gz",
        "archives": ["images_001.tar.gz", "images_002.tar.gz"],
    }

    frame = get_adapter("nih_cxr14", config).list_images(client)

    assert tuple(frame.columns) == CANDIDATE_COLUMNS
    assert len(frame) == 4
    rows = frame.set_index("upstream_path")
    expected = _label_rows(shared_data, [p.split("/")[-1] for p in [*ARCHIVE_1, *ARCHIVE_2]])
    for entry in expected.to_dict(orient="records"):
        row = rows.loc[f"images/{entry['Image Index']}"]
        assert row["finding"] == entry["Finding Labels"]
        assert row["patient_id"] == entry["Patient ID"]
        assert row["age"] == float(entry["Patient Age"])
        assert row["sex"] == entry["Patient Gender"]
        assert row["view"] == entry["View Position"]
    assert rows.loc["images/00001308_002.png", "label"] == "normal"
    assert rows.loc["images/00001308_002.png", "age"] == 14.0
    assert rows.loc["images/00000468_040.png", "label"] == "cap"  # Infiltration|Pneumonia|...
    assert rows.loc["images/00000831_001.png", "label"] == "cap"
    member = "images/00000468_040.png"
    assert rows.loc[member, "image_id"] == f"nih_cxr14:{member}"
    assert rows.loc[member, "url"] == client.url("images_002.tar.gz") + "#" + member
    assert set(frame["covid_source"]) == {"not_covid_source"}
    assert not frame["is_pediatric_flag"].any()
    archived = archives["images_001.tar.gz"] | archives["images_002.tar.gz"]
    for row in frame.itertuples():
        with open(row.local_path, "rb") as handle:
            assert handle.read() == archived[row.upstream_path]


def test_a_subset_of_archives_lists_only_their_images(nih_folder, loopback_client):
    folder, _ = nih_folder
    client = loopback_client("nih_cxr14", folder)
    config = {"metadata_path": "Data_Entry_2017_v2020.csv", "archives": ["images_001.tar.gz"]}
    frame = get_adapter("nih_cxr14", config).list_images(client)
    assert sorted(frame["upstream_path"]) == ["images/00000261_002.png", "images/00001308_002.png"]
    assert client.archive_calls == ["images_001.tar.gz"]


def test_one_missing_archive_is_reported_and_the_others_are_used(nih_folder, loopback_client):
    folder, _ = nih_folder
    client = loopback_client("nih_cxr14", folder)
    config = {
        "metadata_path": "Data_Entry_2017_v2020.csv",
        "archives": ["images_001.tar.gz", "images_404.tar.gz"],
    }
    adapter = get_adapter("nih_cxr14", config)

    frame = adapter.list_images(client)

    assert sorted(frame["upstream_path"]) == ["images/00000261_002.png", "images/00001308_002.png"]
    assert len(adapter.failures) == 1
    failure = adapter.failures[0]
    assert (failure["url"], failure["stage"]) == (client.url("images_404.tar.gz"), "archive")
    assert "404" in failure["reason"]


def test_absolute_archive_urls_through_the_http_client(nih_folder, http_source_client):
    """The real config lists NIH Box URLs: absolute archive URLs beside a relative label file."""
    folder, _ = nih_folder
    client = http_source_client("nih_cxr14", folder)
    archive = client.url("images_002.tar.gz")
    config = {"metadata_path": "Data_Entry_2017_v2020.csv.gz", "archives": [archive]}

    frame = get_adapter("nih_cxr14", config).list_images(client)

    assert sorted(frame["upstream_path"]) == ["images/00000468_040.png", "images/00000831_001.png"]
    assert frame["url"].str.startswith(archive + "#").all()


def test_older_label_file_with_dicom_ages_and_trailing_comma(
    shared_data, nih_folder, loopback_client
):
    """Data_Entry_2017.csv: header ends with a comma; some copies write ages as "058Y"."""
    folder, _ = nih_folder
    table = pd.read_csv(folder / "Data_Entry_2017_v2020.csv", dtype=str)
    table["Patient Age"] = [f"{int(age):03d}Y" for age in table["Patient Age"]]
    buffer = io.StringIO()
    table.to_csv(buffer, index=False)
    lines = buffer.getvalue().splitlines()
    old = "\n".join([lines[0] + ",", *(line + "," for line in lines[1:])]) + "\n"
    (folder / "Data_Entry_2017.csv").write_text(old)
    client = loopback_client("nih_cxr14", folder)
    config = {"metadata_path": "Data_Entry_2017.csv", "archives": ["images_001.tar.gz"]}

    frame = get_adapter("nih_cxr14", config).list_images(client)

    ages = dict(zip(frame["upstream_path"], frame["age"], strict=True))
    assert ages == {"images/00000261_002.png": 39.0, "images/00001308_002.png": 14.0}


def test_label_file_without_nih_columns_is_a_clear_error(tmp_path, loopback_client):
    (tmp_path / "labels.csv").write_text("filename,finding\na.png,COVID-19\n")
    client = loopback_client("nih_cxr14", tmp_path)
    config = {"metadata_path": "labels.csv", "archives": ["images_001.tar.gz"]}
    with pytest.raises(ValueError, match=r"lacks the NIH columns"):
        get_adapter("nih_cxr14", config).list_images(client)


def test_empty_archive_list_names_the_parameter(nih_folder, loopback_client):
    folder, _ = nih_folder
    client = loopback_client("nih_cxr14", folder)
    config = {"metadata_path": "Data_Entry_2017_v2020.csv", "archives": []}
    with pytest.raises(ValueError, match=r"ingest\.sources\.nih_cxr14\.archives is empty"):
        get_adapter("nih_cxr14", config).list_images(client)
