"""Known answers for the split summary table and its figure."""

from __future__ import annotations

import pandas as pd

from covid_cxnet_pipeline.curation.plots import split_summary, split_summary_figure


def _curated() -> pd.DataFrame:
    rows = (
        [("src_a", "covid", "train")] * 30
        + [("src_a", "normal", "train")] * 2
        + [("src_b", "normal", "train")] * 10
        + [("src_a", "covid", "test")] * 4
        + [("hospital_x", "cap", "external")] * 5
    )
    return pd.DataFrame(rows, columns=["source_id", "label", "split"])


def test_split_summary_counts_per_source_label_and_split():
    summary = split_summary(_curated())
    assert summary.values.tolist() == [
        ["hospital_x", "cap", "external", 5],
        ["src_a", "covid", "test", 4],
        ["src_a", "covid", "train", 30],
        ["src_a", "normal", "train", 2],
        ["src_b", "normal", "train", 10],
    ]


def test_split_summary_figure_has_one_panel_per_split_with_counts():
    figure = split_summary_figure(split_summary(_curated()))
    train, test, external = figure.axes  # no validation rows: no validation panel
    assert train.get_title() == "train: 42 images\nnormal 12 · cap 0 · covid 30"
    assert test.get_title() == "test: 4 images\nnormal 0 · cap 0 · covid 4"
    assert external.get_title() == "external: 5 images\nnormal 0 · cap 5 · covid 0"
    assert [t.get_text() for t in train.get_yticklabels()] == ["hospital_x", "src_a", "src_b"]
    # Bars per label in source order: normal, cap, covid; each bar's width is its count.
    widths = [round(p.get_width()) for p in train.patches]
    assert widths == [0, 2, 10, 0, 0, 0, 0, 30, 0]
    texts = [t.get_text() for t in train.texts]
    assert "30" in texts and "10" in texts and "32" in texts  # segments and the src_a total
    assert "2" not in texts[:-3]  # a 2/42 segment is too narrow for a count inside it
    legend = figure.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == ["normal", "cap", "covid"]
