"""Attribute a COVID-19 image to one of the COVID-CXNet paper's nine sources from its provenance.

The paper (Haghanifar et al., 2022) gathered its COVID-19 images from Radiopaedia, SIRM, EuroRad,
Figure1, Cohen's ieee8023 collection, Twitter, published papers, Hannover Medical School and other
social media. armiro/COVID-CXNet's ``metadata.csv`` keeps a provenance URL per image; ``RULES``
maps its parsed host name (a domain or its subdomains; for GitHub, also the path) onto those
categories. A URL no rule knows stays "unknown": guessing would blur the per-source analyses
this attribution exists for.

Collection-level decisions (see each adapter): every image of an ieee8023 copy (GeneralBlockchain,
the DarkCovidNet ``Covid-19`` folder) is ``cohen_ieee8023``, because that is the collection it
was taken from, even when its ieee8023 ``url`` points at Radiopaedia; Figure1 images are
``figure1``; Actualmed is a hospital collection the paper does not name, so ``unknown``; the
non-COVID collections (NIH, Kermany, Shenzhen, Montgomery) are ``not_covid_source``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from covid_cxnet_pipeline.schema import COVID_SOURCES

logger = logging.getLogger(__name__)

UNKNOWN = "unknown"
NOT_COVID_SOURCE = "not_covid_source"


@dataclass(frozen=True)
class Rule:
    """One attribution rule, matched on the URL's parsed host name (never on its raw text).

    Attributes:
        category: one of ``schema.COVID_SOURCES``.
        domains: the host must be one of these or a subdomain of one (``host == d`` or
            ``host.endswith("." + d)``), so "eurorad.org.evil.com" is not EuroRad.
        path_prefix: when set, the lower-case path must also start with it (GitHub owners).
        host_pattern: a regular expression the whole host must match, for host families
            ("scielo.org.ar", "journals.lww.com"); used when ``domains`` is empty or misses.
    """

    category: str
    domains: tuple[str, ...] = ()
    path_prefix: str = ""
    host_pattern: str = ""

    def matches(self, host: str, path: str) -> bool:
        """Whether a lower-case host (no "www.", no trailing dot) and path fall under the rule."""
        on_domain = any(host == domain or host.endswith("." + domain) for domain in self.domains)
        if not on_domain and self.host_pattern:
            on_domain = re.fullmatch(self.host_pattern, host) is not None
        return on_domain and path.startswith(self.path_prefix)


_GITHUB = ("github.com", "raw.githubusercontent.com")
# First match wins, so the specific GitHub repositories come before anything broader.
RULES: tuple[Rule, ...] = (
    Rule("radiopaedia", ("radiopaedia.org",)),
    Rule("sirm", ("sirm.org",)),
    Rule("eurorad", ("eurorad.org",)),
    Rule("figure1", ("figure1.com",)),
    Rule("cohen_ieee8023", _GITHUB, path_prefix="/ieee8023/"),
    Rule("hannover", _GITHUB, path_prefix="/ml-workgroup/"),
    Rule("hannover", ("mh-hannover.de",)),
    Rule("twitter", ("twitter.com", "x.com", "t.co")),
    Rule(
        "social_media",
        (
            "instagram.com",
            "facebook.com",
            "fb.com",
            "reddit.com",
            "linkedin.com",
            "youtube.com",
            "youtu.be",
            "t.me",
            "telegram.org",
            "weibo.com",
            "tiktok.com",
            "vk.com",
        ),
    ),
    # Journals, publishers, preprint servers and literature databases.
    Rule(
        "papers",
        (
            "doi.org",
            "ncbi.nlm.nih.gov",
            "europepmc.org",
            "springer.com",
            "wiley.com",
            "sciencedirect.com",
            "elsevier.com",
            "cell.com",
            "thelancet.com",
            "nature.com",
            "nejm.org",
            "rsna.org",
            "bmj.com",
            "oup.com",
            "jamanetwork.com",
            "ajronline.org",
            "ersjournals.com",
            "ajtmh.org",
            "medrxiv.org",
            "biorxiv.org",
            "arxiv.org",
            "researchsquare.com",
            "researchgate.net",
            "frontiersin.org",
            "mdpi.com",
            "hindawi.com",
            "cureus.com",
            "biomedcentral.com",
            "plos.org",
            "sagepub.com",
            "tandfonline.com",
            "karger.com",
            "kjim.org",
            "kjronline.org",
            "tci-thaijo.org",
            "pjms.org.pk",
            "indianpediatrics.net",
            "onlinejcf.com",
            "heartrhythmcasereports.com",
            "jkms.org",
            "jstage.jst.go.jp",
            "semanticscholar.org",
        ),
        # Publishers with one host per country (thieme-connect.de, scielo.org.ar...).
        host_pattern=r"(?:[a-z0-9-]+\.)*(?:thieme-connect|scielo)(?:\.[a-z]{2,})+",
    ),
    # Journal sites on their own host: "journals.lww.com", "some-journal.example.org".
    Rule("papers", host_pattern=r"(?:.*[.\-])?journals?[.\-].*"),
)

for _rule in RULES:
    if _rule.category not in COVID_SOURCES:
        raise ValueError(f"attribution rule {_rule} names unknown category {_rule.category!r}")


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
    host = host.lower().rstrip(".").removeprefix("www.")
    path = parts.path.lower()
    for rule in RULES:
        if rule.matches(host, path):
            return rule.category
    return UNKNOWN
