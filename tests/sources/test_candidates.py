"""Untrusted names, odd metadata encodings and the candidate table contract."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from covid_cxnet_pipeline.sources.base import CANDIDATE_COLUMNS, MASK_CANDIDATE_COLUMNS
from covid_cxnet_pipeline.sources.candidates import (
    candidate_frame,
    candidate_row,
    folder,
    image_files,
    is_image_path,
    mask_frame,
    read_metadata_csv,
    read_text,
    require_columns,
    safe_relpath,
    setting,
)


class _Client:
    source_id = "toy"
    base_url = "http://mirror.test/toy/"

    def url(self, relpath: str) -> str:
        return self.base_url + relpath


@pytest.mark.parametrize(
    ("name", "cleaned"),
    [
        ("images/a.png", "images/a.png"),
        ("./images//a.png", "images/a.png"),
        ("../etc/passwd", None),
        ("images/../../x.png", None),
        ("/etc/passwd", None),
        ("C:/windows/x.png", None),
        ("images\\..\\x.png", None),
        ("images/a\nb.png", None),
        ("", None),
    ],
)
def test_safe_relpath(name, cleaned):
    assert safe_relpath(name) == cleaned


def test_image_files_filters_extensions_and_refuses_unsafe_names():
    listing = ["b/x.JPG", "a.jfif", "README.md", "c/.DS_Store", "../up.png", "d.webp", "a.jfif"]
    assert image_files(listing, "toy") == ["a.jfif", "b/x.JPG", "d.webp"]
    assert is_image_path("scan.DCM") and not is_image_path("notes.pdf")


def test_read_text_handles_bom_gzip_and_windows_bytes(tmp_path):
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbffilename\n1.png\n")
    packed = tmp_path / "labels.csv.gz"
    packed.write_bytes(gzip.compress(b"a,b\n1,2\n"))
    windows = tmp_path / "figure1.csv"
    windows.write_bytes(b"notes\nFever 38\xb0, low 90\x92s\n")
    assert read_text(bom).startswith("filename")
    assert read_text(packed) == "a,b\n1,2\n"
    assert read_text(windows) == "notes\nFever 38\u00b0, low 90\u2019s\n"


def test_read_metadata_csv_keeps_multiline_cells_and_drops_empty_trailing_column(tmp_path):
    path = tmp_path / "metadata.csv"
    path.write_text('id,notes,\n1,"line one\nline two",\n2,,\n', encoding="utf-8")
    table = read_metadata_csv(path)
    assert list(table.columns) == ["id", "notes"]
    assert table["notes"].tolist() == ["line one\nline two", ""]


def test_candidate_frame_has_exact_columns_and_types():
    row = candidate_row(
        "toy", "images/a.png", _Client(), covid_source="unknown", label="covid", flags=["p", "q"]
    )
    frame = candidate_frame([row])
    assert tuple(frame.columns) == CANDIDATE_COLUMNS
    assert frame.loc[0, "image_id"] == "toy:images/a.png"
    assert frame.loc[0, "url"] == "http://mirror.test/toy/images/a.png"
    assert frame.loc[0, "flags"] == "p;q"
    assert np.isnan(frame.loc[0, "age"]) and frame["is_pediatric_flag"].dtype == bool
    assert tuple(candidate_frame([]).columns) == CANDIDATE_COLUMNS
    with pytest.raises(ValueError, match="duplicate image ids"):
        candidate_frame([row, row])


def test_mask_frame_columns():
    assert tuple(mask_frame([]).columns) == MASK_CANDIDATE_COLUMNS


def test_setting_names_the_missing_parameter():
    assert setting({"images_dir": "x/"}, "toy", "images_dir") == "x/"
    with pytest.raises(KeyError, match=r"ingest\.sources\.toy\.metadata_path"):
        setting({}, "toy", "metadata_path")
    assert folder("/images") == "images/" and folder("") == ""


def test_require_columns_names_the_table_the_missing_columns_and_the_hint():
    import pandas as pd

    table = pd.DataFrame({"a": ["1"], "c": ["2"]})
    require_columns(table, ("a", "c"), where="src: meta.csv", hint="unused")
    with pytest.raises(ValueError) as raised:
        require_columns(table, ("a", "b", "d"), where="src: meta.csv", kind="NIH", hint="check X")
    assert str(raised.value) == "src: meta.csv lacks the NIH columns ['b', 'd']; check X"
    with pytest.raises(ValueError, match=r"^src: m lacks the columns \['b'\]; h$"):
        require_columns(table, ("b",), where="src: m", hint="h")


def test_configured_license_prefers_the_config_over_the_class_licence():
    from covid_cxnet_pipeline.sources.base import SourceAdapter

    class Tiny(SourceAdapter):
        license = "CC BY 4.0"

        def list_images(self, client):
            raise NotImplementedError

    assert Tiny("tiny", {}).configured_license == "CC BY 4.0"
    assert Tiny("tiny", {"license": ""}).configured_license == "CC BY 4.0"
    assert Tiny("tiny", {"license": "CC0"}).configured_license == "CC0"


def test_candidate_row_url_for_downloads_extracted_files_and_archive_members():
    client = _Client()
    common = {"covid_source": "none", "label": "normal"}
    assert candidate_row("toy", "a/b.png", client, **common)["url"] == (
        "http://mirror.test/toy/a/b.png"
    )
    assert candidate_row("toy", "a/b.png", client, local_path="/x/a/b.png", **common)["url"] == ""
    archived = candidate_row(
        "toy",
        "a/b.png",
        client,
        local_path="/x/a/b.png",
        archive_url="http://mirror.test/toy/all.zip",
        **common,
    )
    assert archived["url"] == "http://mirror.test/toy/all.zip#a/b.png"
    assert archived["local_path"] == "/x/a/b.png"
    with pytest.raises(ValueError, match="archive_url but no local_path"):
        candidate_row("toy", "a/b.png", client, archive_url="http://mirror.test/a.zip", **common)
