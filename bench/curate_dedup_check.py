"""Check the curate de-duplication against the 83 strict duplicate groups of shared/data/manifest.csv.

Builds a raw_index-like table straight from the manifest's image rows (no ingest needed), runs
the curate nodes (harmonise, features, pairs, groups, then filters/split/validation), and prints:
how many manifest groups end up as one duplicate group, each miss with its closest pHash distance
and correlation, and every extra merge (images joined by us but not by the manifest).

Result on shared/data (1155 images, 1148 distinct files; default parameters: 256-bit pHash of the
border-trimmed, contrast-stretched image, strict 24 / max 60 bits, thumbnail correlation 0.83):
82 of 83 manifest groups reduced to one image. The miss, dup0082 (armiro 312.jpg vs NIH
00001323_002.png, distance 84, correlation 0.955), is two different films on inspection (other
heart outline, clavicles and markers): correlation of small thumbnails is not evidence of identity
at that level, many unrelated look-alike pairs score 0.92-0.96. Two extra merges: Figure1
COVID-00001 = GeneralBlockchain figure1-...-98 (same film, black padding; distance 2) and NIH
00001543_003 + _004 (same patient, near-identical consecutive films). Features: about 11 s on
2 cores, a re-run reads the sha256 cache.

Usage:
    python bench/curate_dedup_check.py [--shared ../shared/data] [--sheet extra.png]
        [--strict-hamming 24] [--max-hamming 60] [--min-correlation 0.85]
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from PIL import Image

from covid_cxnet_pipeline.curation.dedup import hashes_to_words, thumbnail_correlation
from covid_cxnet_pipeline.pipelines.curate import nodes
from covid_cxnet_pipeline.schema import RAW_INDEX_COLUMNS

PROJECT = Path(__file__).resolve().parents[1]


def manifest_raw_index(shared: Path) -> pd.DataFrame:
    """A raw_index-shaped table built from the manifest's image rows."""
    manifest = pd.read_csv(shared / "manifest.csv", dtype=str, keep_default_na=False)
    images = manifest[manifest["kind"] == "image"].reset_index(drop=True)
    raw = pd.DataFrame(
        {
            "image_id": images["source_id"] + ":" + images["upstream_path"],
            "source_id": images["source_id"],
            "covid_source": "unknown",
            "url": "",
            "upstream_path": images["upstream_path"],
            "patient_id": images["patient_id"],
            "age": np.nan,
            "sex": "",
            "view": images["view"],
            "label": images["label"].replace({"unknown": "other"}),
            "finding": images["finding"],
            "license": "",
            "is_pediatric_flag": images["is_pediatric"] == "true",
            "flags": "",
            "sha256": images["sha256"],
            "width": pd.to_numeric(images["width"]),
            "height": pd.to_numeric(images["height"]),
            "path": [str(shared / p) for p in images["path"]],
        }
    )
    raw["manifest_group"] = images["duplicate_group"]
    return raw[[*RAW_INDEX_COLUMNS, "manifest_group"]]


def pair_evidence(features: pd.DataFrame, sha_a: str, sha_b: str) -> tuple[int, float]:
    """pHash Hamming distance and thumbnail correlation of two files."""
    rows = features.set_index("sha256").loc[[sha_a, sha_b]]
    words = hashes_to_words(rows["phash"].tolist())
    distance = int(np.bitwise_count(words[0] ^ words[1]).sum())
    return distance, thumbnail_correlation(rows["thumbnail"].iloc[0], rows["thumbnail"].iloc[1])


def contact_sheet(paths: list[tuple[str, str]], output: Path, side: int = 200) -> None:
    """Pairs side by side, one pair per row, for a visual check."""
    sheet = Image.new("L", (2 * side, max(1, len(paths)) * side))
    for row, pair in enumerate(paths):
        for column, path in enumerate(pair):
            with Image.open(path) as image:
                gray = image.convert("L")
                gray.thumbnail((side, side))
                sheet.paste(gray, (column * side, row * side))
    sheet.save(output)


def main() -> None:
    """Run the check and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=PROJECT.parent / "shared" / "data")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/curate_bench_features.parquet"))
    parser.add_argument("--sheet", type=Path, default=None, help="PNG of the extra merges")
    parser.add_argument("--strict-hamming", type=int, default=None)
    parser.add_argument("--max-hamming", type=int, default=None)
    parser.add_argument("--min-correlation", type=float, default=None)
    args = parser.parse_args()

    params = yaml.safe_load((PROJECT / "conf/base/parameters_curate.yml").read_text())["curate"]
    params["features"]["cache_path"] = str(args.cache)
    for key in ("strict_hamming", "max_hamming", "min_correlation"):
        if getattr(args, key) is not None:
            params["dedup"][key] = getattr(args, key)
    raw = manifest_raw_index(args.shared)
    started = time.perf_counter()
    harmonised = nodes.harmonise(raw, params)
    features = nodes.image_features(harmonised, params)
    feature_seconds = time.perf_counter() - started
    pairs = nodes.duplicate_pairs(features, params)
    grouped, report = nodes.group_images(harmonised, features, pairs, params)
    grouped["manifest_group"] = raw["manifest_group"].to_numpy()
    print(f"dedup parameters: {params['dedup']}")
    print(f"images: {len(raw)}, distinct files: {raw['sha256'].nunique()}, ", end="")
    print(f"features in {feature_seconds:.1f} s, confirmed pairs: {len(pairs)}")

    marked = grouped[grouped["manifest_group"] != ""]
    ours_per_group = marked.groupby("manifest_group")["duplicate_group"].nunique()
    caught = int((ours_per_group == 1).sum())
    print(f"manifest groups reduced to one image: {caught} of {len(ours_per_group)}")
    for group in ours_per_group[ours_per_group > 1].index:
        members = marked[marked["manifest_group"] == group]
        print(f"  MISS {group}:")
        for (_, a), (_, b) in itertools.combinations(members.iterrows(), 2):
            if a["duplicate_group"] == b["duplicate_group"]:
                continue
            distance, correlation = pair_evidence(features, a["sha256"], b["sha256"])
            print(
                f"    {a['image_id']} ({a['width']}x{a['height']}) vs {b['image_id']} "
                f"({b['width']}x{b['height']}): pHash distance {distance}, "
                f"correlation {correlation:.3f}"
            )

    key = grouped["manifest_group"].where(grouped["manifest_group"] != "", grouped["image_id"])
    extra_pairs = []
    for _, members in grouped.groupby("duplicate_group"):
        keys = key[members.index].unique()
        if len(keys) < 2:
            continue
        firsts = [members[key[members.index] == k].iloc[0] for k in keys]
        for a, b in itertools.combinations(firsts, 2):
            distance, correlation = pair_evidence(features, a["sha256"], b["sha256"])
            extra_pairs.append((a["path"], b["path"]))
            print(
                f"  EXTRA {a['image_id']} ({a['width']}x{a['height']}) + {b['image_id']} "
                f"({b['width']}x{b['height']}): pHash distance {distance}, "
                f"correlation {correlation:.3f}"
            )
    print(f"extra merges (not in manifest groups): {len(extra_pairs)}")
    if args.sheet and extra_pairs:
        contact_sheet(extra_pairs, args.sheet)
        print(f"contact sheet of extra merges: {args.sheet}")

    kept, exclusions = nodes.filter_images(grouped.drop(columns="manifest_group"), params)
    curated = nodes.split_and_validate(kept, params)
    print(f"duplicate groups (>1 image): {len(report)}, images in them: ", end="")
    print(f"{int(report['duplicate_count'].sum())}")
    print(f"curated: {len(curated)} kept, {len(exclusions)} excluded")
    print(exclusions["reason"].value_counts().to_string())
    print(pd.crosstab(curated["label"], curated["split"]).to_string())


if __name__ == "__main__":
    main()
