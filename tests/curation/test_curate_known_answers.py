"""Known answers of the curation steps on a small hand-built raw index with tiny images."""

import pandas as pd
import pytest
from PIL import Image

from covid_cxnet_pipeline.curation.split import assign_splits
from covid_cxnet_pipeline.curation.validation import (
    CurationValidationError,
    validate_curated_index,
)
from covid_cxnet_pipeline.pipelines.curate import nodes

from .builders import raw_row, save_image, synthetic_picture

LABELS = ("normal", "cap", "covid")


@pytest.fixture
def raw_index(tmp_path) -> pd.DataFrame:
    """Thirty ordinary images plus one row per situation under test."""
    rows = []
    for number in range(30):
        stored = save_image(synthetic_picture(100 + number), tmp_path / f"plain{number}.png")
        rows.append(
            raw_row(f"src_a:plain{number}.png", stored, label=LABELS[number % 3], age=40.0,
                    patient_id=f"pa{number}")
        )  # fmt: skip
    picture = synthetic_picture(1, size=(200, 240))
    big = save_image(picture, tmp_path / "shared_big.png")
    small = save_image(picture.resize((120, 144)), tmp_path / "shared_small.jpg", quality=75)
    rows.append(raw_row("src_a:shared.png", big, patient_id="p1", age=50.0, sex=""))
    rows.append(raw_row("src_b:copy.jpg", small, patient_id="x9", sex="F", view="AP"))
    other = save_image(synthetic_picture(2), tmp_path / "x9_followup.png")
    rows.append(raw_row("src_b:followup.png", other, patient_id="x9"))
    child = synthetic_picture(3)
    rows.append(raw_row("src_a:child.png", save_image(child, tmp_path / "child.png"), age=10.0))
    rows.append(
        raw_row("src_b:child_copy.jpg", save_image(child, tmp_path / "child.jpg", quality=80))
    )
    flagged = save_image(synthetic_picture(4), tmp_path / "p.png")
    rows.append(raw_row("armiro:12p.png", flagged, is_pediatric_flag=True, flags="pediatric"))
    kermany = save_image(synthetic_picture(5), tmp_path / "kermany.png")
    rows.append(raw_row("kermany:NORMAL/1.jpeg", kermany, label="normal"))
    lateral = save_image(synthetic_picture(6), tmp_path / "lateral.png")
    rows.append(raw_row("src_a:lateral.png", lateral, view="L"))
    unknown = save_image(synthetic_picture(7), tmp_path / "tb.png")
    rows.append(raw_row("src_a:tb.png", unknown, label="other", finding="Tuberculosis"))
    tiny = save_image(synthetic_picture(8, size=(40, 40)), tmp_path / "tiny.png")
    rows.append(raw_row("src_a:tiny.png", tiny))
    flat = save_image(Image.new("L", (128, 128), 90), tmp_path / "flat.png")
    rows.append(raw_row("src_a:flat.png", flat))
    for number in range(4):
        stored = save_image(synthetic_picture(200 + number), tmp_path / f"ext{number}.png")
        rows.append(raw_row(f"hospital_x:{number}.png", stored, label=LABELS[number % 3]))
    return pd.DataFrame(rows)


def run_curation(raw_index: pd.DataFrame, params: dict):
    harmonised = nodes.harmonise(raw_index, params)
    features = nodes.image_features(harmonised, params)
    pairs = nodes.duplicate_pairs(features, params)
    grouped, report = nodes.group_images(harmonised, features, pairs, params)
    kept, exclusions = nodes.filter_images(grouped, params)
    curated = nodes.split_and_validate(kept, params)
    return curated, exclusions, report


def test_curation_known_answers(raw_index, curate_params):
    curate_params["split"]["external_sources"] = ["hospital_x"]
    curated, exclusions, report = run_curation(raw_index, curate_params)
    reasons = exclusions.set_index("image_id")["reason"].to_dict()
    assert reasons == {
        "src_b:copy.jpg": "duplicate",
        "src_a:child.png": "pediatric_age",
        "src_b:child_copy.jpg": "pediatric_age",  # the copy of a child's film goes too
        "armiro:12p.png": "pediatric_flag",
        "kermany:NORMAL/1.jpeg": "pediatric_source",
        "src_a:lateral.png": "lateral",
        "src_a:tb.png": "unknown_label",
        "src_a:tiny.png": "too_small",
        "src_a:flat.png": "low_quality",
    }
    assert exclusions.loc[
        exclusions["image_id"] == "src_b:child_copy.jpg", "all_reasons"
    ].item() == ("pediatric_age;duplicate")
    assert len(curated) == len(raw_index) - len(reasons)

    shared = curated.set_index("image_id").loc["src_a:shared.png"]
    assert shared["duplicate_count"] == 2  # canonical: the larger copy
    assert shared["sex"] == "F"  # filled from the smaller copy
    assert shared["view_harmonised"] == "PA"  # the canonical's own value wins
    followup = curated.set_index("image_id").loc["src_b:followup.png"]
    # Patient x9 of src_b is patient p1 of src_a: linked through the duplicate picture.
    assert followup["patient_group"] == shared["patient_group"] == "src_a:p1"
    assert followup["split"] == shared["split"]

    external = curated[curated["source_id"] == "hospital_x"]
    assert (external["split"] == "external").all() and len(external) == 4
    assert set(curated.loc[curated["source_id"] != "hospital_x", "split"]) == {
        "train",
        "validation",
        "test",
    }
    assert report["member_image_ids"].tolist() == [
        "src_a:child.png;src_b:child_copy.jpg",
        "src_a:shared.png;src_b:copy.jpg",
    ]


def test_optional_rules_follow_their_parameters(raw_index, curate_params):
    curate_params["filters"]["pediatric"]["sources"] = []
    curate_params["filters"]["exclude_lateral"] = False
    _, exclusions, _ = run_curation(raw_index, curate_params)
    assert "kermany:NORMAL/1.jpeg" not in set(exclusions["image_id"])
    assert "src_a:lateral.png" not in set(exclusions["image_id"])


def test_normal_looking_images_are_excluded_on_request(tmp_path, curate_params):
    rows = [
        raw_row(f"armiro:{n}-.png", save_image(synthetic_picture(n), tmp_path / f"{n}.png"),
                flags="normal_looking" if n == 0 else "", label=LABELS[n % 3])
        for n in range(6)
    ]  # fmt: skip
    curate_params["filters"]["exclude_normal_looking"] = True
    _, exclusions, _ = run_curation(pd.DataFrame(rows), curate_params)
    assert exclusions[["image_id", "reason"]].values.tolist() == [
        ["armiro:0-.png", "normal_looking"]
    ]


def test_split_keeps_groups_whole_and_follows_ratios():
    frame = pd.DataFrame(
        {
            "source_id": ["s"] * 200,
            "patient_group": [f"g{i // 2}" for i in range(200)],  # 100 groups of 2
            "label": [LABELS[(i // 2) % 3] for i in range(200)],
        }
    )
    ratios = {"train": 0.6, "validation": 0.2, "test": 0.2}
    split = assign_splits(frame, ratios, seed=3)
    assert frame.assign(split=split).groupby("patient_group")["split"].nunique().max() == 1
    counts = split.value_counts()
    assert counts["train"] == pytest.approx(120, abs=2)
    assert counts["validation"] == pytest.approx(40, abs=2)
    per_label = pd.crosstab(frame["label"], split)
    assert (per_label["test"] >= 12).all()  # every label reaches the test split
    assert split.equals(assign_splits(frame, ratios, seed=3))  # repeatable


def test_validation_names_groups_that_leak_between_splits(raw_index, curate_params):
    curated, _, _ = run_curation(raw_index, curate_params)
    bad = curated.copy()
    followup = bad["image_id"] == "src_b:followup.png"
    bad.loc[followup, "split"] = "test" if bad.loc[followup, "split"].item() != "test" else "train"
    with pytest.raises(CurationValidationError, match=r"patient_group .*'src_a:p1'"):
        validate_curated_index(bad, curate_params["filters"])


def test_validation_rejects_duplicated_ids_and_remaining_children(raw_index, curate_params):
    curated, _, _ = run_curation(raw_index, curate_params)
    doubled = pd.concat([curated, curated.iloc[:1]], ignore_index=True)
    with pytest.raises(CurationValidationError, match="image_id"):
        validate_curated_index(doubled, curate_params["filters"])
    young = curated.copy()
    young.loc[0, "age_years"] = 5.0
    with pytest.raises(CurationValidationError, match="under 18 years"):
        validate_curated_index(young, curate_params["filters"])
    lacking = curated.drop(columns="patient_group")
    with pytest.raises(CurationValidationError, match="patient_group"):
        validate_curated_index(lacking, curate_params["filters"])


def test_a_patient_linked_to_an_external_source_follows_it_into_external():
    frame = pd.DataFrame(
        {
            "source_id": ["hospital_x", "src_a", "src_a", "src_a"],
            "patient_group": ["g1", "g1", "g2", "g3"],
            "label": ["covid", "covid", "normal", "cap"],
        }
    )
    split = assign_splits(frame, {"train": 1, "validation": 1, "test": 1}, 0, ["hospital_x"])
    assert split.tolist()[:2] == ["external", "external"]
    assert set(split.tolist()[2:]) <= {"train", "validation", "test"}


def test_copies_with_conflicting_labels_are_all_excluded(tmp_path, curate_params):
    picture = synthetic_picture(9)
    rows = [
        raw_row("src_a:x.png", save_image(picture, tmp_path / "x.png"), label="covid"),
        raw_row("src_b:x.jpg", save_image(picture, tmp_path / "x.jpg"), label="normal"),
        raw_row("src_c:x.png", save_image(picture, tmp_path / "c" / "x.png"), label="other"),
    ]
    _, exclusions, _ = run_curation(pd.DataFrame(rows), curate_params)
    assert exclusions.set_index("image_id")["reason"].to_dict() == {
        "src_a:x.png": "label_conflict",
        "src_b:x.jpg": "label_conflict",
        "src_c:x.png": "label_conflict",
    }


def test_validation_rejects_one_file_kept_twice(raw_index, curate_params):
    # Two rows of the same file (same sha256) mean exact de-duplication regressed.
    curated, _, _ = run_curation(raw_index, curate_params)
    twice = curated.copy()
    same_place = twice.index[twice["split"] == twice.loc[0, "split"]][1]
    for column in ("sha256", "patient_group", "duplicate_group"):
        twice.loc[same_place, column] = twice.loc[0, column]
    with pytest.raises(CurationValidationError) as raised:
        validate_curated_index(twice, curate_params["filters"])
    message = str(raised.value)
    assert "column 'sha256' fails field_uniqueness in 2 case(s)" in message
    assert "exact de-duplication regressed" in message
    assert twice.loc[0, "sha256"] in message
    validate_curated_index(curated, curate_params["filters"])  # the untouched index passes
