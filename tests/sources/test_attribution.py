"""Known answers for the COVID-CXNet source attribution rules."""

from __future__ import annotations

import pytest

from covid_cxnet_pipeline.schema import COVID_SOURCES
from covid_cxnet_pipeline.sources.attribution import RULES, attribute_url


@pytest.mark.parametrize(
    ("url", "category"),
    [
        ("https://twitter.com/ChestImaging/status/1243928581983670272", "twitter"),
        ("https://x.com/someone/status/1", "twitter"),
        ("https://radiopaedia.org/cases/covid-19-pneumonia-7?lang=us", "radiopaedia"),
        ("https://www.sirm.org/2020/05/20/covid-19-caso-92-mini-review-pediatrica/", "sirm"),
        ("https://www.eurorad.org/case/16747", "eurorad"),
        ("https://app.figure1.com/rd/case/5e7c", "figure1"),
        (
            "https://github.com/ieee8023/covid-chestxray-dataset/blob/master/images/a.jpg",
            "cohen_ieee8023",
        ),
        ("https://github.com/ml-workgroup/covid-19-image-repository", "hannover"),
        ("https://www.instagram.com/p/abc/", "social_media"),
        ("https://www.reddit.com/r/Radiology/comments/x", "social_media"),
        ("https://doi.org/10.3904/kjim.2020.180", "papers"),
        ("https://dx.doi.org/10.1016%2FS1473-3099(20)30484-9", "papers"),
        ("https://www.ncbi.nlm.nih.gov/pmc/articles/PMC7141645/", "papers"),
        ("https://link.springer.com/article/10.1007/s00330-020-06801-0", "papers"),
        ("https://www.medrxiv.org/content/10.1101/2020.04.01", "papers"),
        ("https://he01.tci-thaijo.org/index.php/x", "papers"),
        ("https://some-journal.example.org/article/1", "papers"),
        ("www.eurorad.org/case/1", "eurorad"),
        ("", "unknown"),
        ("https://example.com/a.jpg", "unknown"),
        # a host that merely contains a rule's name is not that source
        ("https://notradiopaedia.org/x", "unknown"),
        ("https://github.com/someone/ieee8023-fork", "unknown"),
    ],
)
def test_attribute_url(url, category):
    assert attribute_url(url) == category


def test_every_rule_names_a_schema_category():
    assert {rule.category for rule in RULES} <= set(COVID_SOURCES)


@pytest.mark.parametrize(
    "url",
    [
        # A rule's domain at the start of a longer, unrelated host is not that source.
        "https://eurorad.org.evil.com/x",
        "https://sirm.org.evil.com/x",
        "https://radiopaedia.org.evil.com/x",
        "https://www.radiopaedia.org-cases.net/x",
        "https://figure1.com.example.net/x",
        "https://twitter.com.evil.com/status/1",
        "https://github.com.evil.com/ieee8023/covid-chestxray-dataset",
        "https://evilsirm.org/x",
        "https://myeurorad.org/case/1",
        # a rule's text in the path or query of another host does not count either
        "https://example.com/radiopaedia.org/cases/1",
        "https://example.com/?u=https://www.eurorad.org/case/1",
        "https://example.com/journal-of-things",
    ],
)
def test_lookalike_hosts_are_unknown(url):
    assert attribute_url(url) == "unknown"


@pytest.mark.parametrize(
    ("url", "category"),
    [
        # subdomains of a rule's domain belong to it
        ("https://prod-images-static.radiopaedia.org/images/1/a.jpg", "radiopaedia"),
        ("https://RADIOPAEDIA.ORG/cases/1", "radiopaedia"),
        ("https://radiopaedia.org./cases/1", "radiopaedia"),
        ("https://radiopaedia.org:443/cases/1", "radiopaedia"),
        ("https://old.eurorad.org/case/1", "eurorad"),
        ("https://mobile.twitter.com/a/status/1", "twitter"),
        (
            "https://raw.githubusercontent.com/ieee8023/covid-chestxray-dataset/x.jpg",
            "cohen_ieee8023",
        ),
        ("https://journals.lww.com/x", "papers"),
        ("https://www.thieme-connect.de/products/x", "papers"),
        ("https://www.scielo.org.ar/x", "papers"),
    ],
)
def test_hosts_match_on_domain_boundaries(url, category):
    assert attribute_url(url) == category


@pytest.mark.parametrize("url", ["http://[bad", "https://[::1/x", "http://a]b/", "[oops]/y"])
def test_malformed_url_is_unknown_with_a_warning_naming_the_row(url, caplog):
    with caplog.at_level("WARNING", logger="covid_cxnet_pipeline.sources.attribution"):
        assert attribute_url(url, where="toy metadata.csv row 7") == "unknown"
    assert "toy metadata.csv row 7" in caplog.text
    assert url in caplog.text
