"""Attribute a COVID-19 image to one of the COVID-CXNet paper's nine sources from its provenance.

The paper (Haghanifar et al., 2022) gathered its COVID-19 images from Radiopaedia, SIRM, EuroRad,
Figure1, Cohen's ieee8023 collection, Twitter, published papers, Hannover Medical School and other
social media. armiro/COVID-CXNet's ``metadata.csv`` keeps a provenance URL per image; ``RULES``
maps its host (and, for GitHub, its path) onto those categories. A URL no rule knows stays
"unknown": guessing would blur the per-source analyses this attribution exists for.

Collection-level decisions (see each adapter): every image of an ieee8023 copy (GeneralBlockchain,
the DarkCovidNet ``Covid-19`` folder) is ``cohen_ieee8023``, because that is the collection it
was taken from, even when its ieee8023 ``url`` points at Radiopaedia; Figure1 images are
``figure1``; Actualmed is a hospital collection the paper does not name, so ``unknown``; the
non-COVID collections (NIH, Kermany, Shenzhen, Montgomery) are ``not_covid_source``.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit

from covid_cxnet_pipeline.schema import COVID_SOURCES

logger = logging.getLogger(__name__)

UNKNOWN = "unknown"
NOT_COVID_SOURCE = "not_covid_source"

# (regular expression searched in "host/path" of the URL, lower case, "www." removed; category).
# First match wins, so the specific GitHub repositories come before anything broader.
RULES: tuple[tuple[str, str], ...] = (
    (r"^radiopaedia\.org", "radiopaedia"),
    (r"^(\w+\.)?sirm\.org", "sirm"),
    (r"^(\w+\.)?eurorad\.org", "eurorad"),
    (r"(^|\.)figure1\.com", "figure1"),
    (r"^github\.com/ieee8023/", "cohen_ieee8023"),
    (r"^(raw\.githubusercontent\.com|github\.com)/ml-workgroup/", "hannover"),
    (r"(^|\.)mh-hannover\.de", "hannover"),
    (r"^((mobile\.|pic\.)?twitter\.com|x\.com|t\.co)(/|$)", "twitter"),
    (
        r"(^|\.)(instagram\.com|facebook\.com|fb\.com|reddit\.com|linkedin\.com|youtube\.com"
        r"|youtu\.be|t\.me|telegram\.org|weibo\.com|tiktok\.com|vk\.com)(/|$)",
        "social_media",
    ),
    # Journals, publishers, preprint servers and literature databases.
    (
        r"(^|\.)(doi\.org|ncbi\.nlm\.nih\.gov|europepmc\.org|springer\.com|wiley\.com"
        r"|sciencedirect\.com|elsevier\.com|cell\.com|thelancet\.com|nature\.com|nejm\.org"
        r"|rsna\.org|bmj\.com|oup\.com|jamanetwork\.com|ajronline\.org|ersjournals\.com"
        r"|ajtmh\.org|medrxiv\.org|biorxiv\.org|arxiv\.org|researchsquare\.com"
        r"|researchgate\.net|frontiersin\.org|mdpi\.com|hindawi\.com|cureus\.com"
        r"|biomedcentral\.com|plos\.org|sagepub\.com|tandfonline\.com|karger\.com"
        r"|thieme-connect\.\w+|kjim\.org|kjronline\.org|tci-thaijo\.org|pjms\.org\.pk"
        r"|indianpediatrics\.net|onlinejcf\.com|heartrhythmcasereports\.com"
        r"|scielo\.\w+|jkms\.org|jstage\.jst\.go\.jp|semanticscholar\.org)(/|$)",
        "papers",
    ),
    (r"(^|[.\-])journals?[.\-]", "papers"),
)
_COMPILED = tuple((re.compile(pattern), category) for pattern, category in RULES)

for _pattern, _category in RULES:
    if _category not in COVID_SOURCES:
        raise ValueError(f"attribution rule {_pattern!r} names unknown category {_category!r}")


def attribute_url(url: str, *, where: str = "") -> str:
    """The COVID-CXNet source category of a provenance URL.

    Args:
        url: an http(s) URL (scheme optional), e.g. "https://twitter.com/ChestImaging/status/1".
        where: the source and row the URL comes from, named in the warning about a malformed URL.

    Returns:
        One of ``schema.COVID_SOURCES``: the first matching rule's category, else "unknown"
        (also for a URL that cannot be parsed, such as "http://[bad").
    """
    text = url.strip()
    if not text:
        return UNKNOWN
    if "://" not in text:
        text = "//" + text
    try:
        parts = urlsplit(text)
        host = parts.hostname or ""
    except ValueError as error:
        # One garbled metadata cell must not stop the ingest of a whole source.
        logger.warning(
            "%s: malformed provenance URL %r (%s); covid_source stays unknown",
            where or "attribution",
            url,
            error,
        )
        return UNKNOWN
    host = host.removeprefix("www.")
    target = f"{host}{parts.path}".lower()
    for pattern, category in _COMPILED:
        if pattern.search(target):
            return category
    return UNKNOWN
