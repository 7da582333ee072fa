"""Column contracts shared by every stage: the tables that flow between pipelines.

Each stage reads and writes an index table whose rows point at image files. The constants here
are the single source of truth for their column names and vocabularies.
"""

# Labels as ingested (``other`` covers TB, ARDS, inconclusive, uncurated findings).
RAW_LABELS = ("normal", "cap", "covid", "other")
# Labels the classifiers are trained on.
CLASS_LABELS = ("normal", "cap", "covid")
VIEWS = ("PA", "AP", "AP supine", "lateral", "unknown")
SPLITS = ("train", "validation", "test", "external")

# The nine COVID-19 source categories of the COVID-CXNet paper, plus "unknown" for images
# whose provenance does not say, and "not_covid_source" for the non-COVID collections.
COVID_SOURCES = (
    "radiopaedia",
    "sirm",
    "eurorad",
    "figure1",
    "cohen_ieee8023",
    "twitter",
    "papers",
    "hannover",
    "social_media",
    "unknown",
    "not_covid_source",
)

# One row per ingested image (catalog: raw_index).
RAW_INDEX_COLUMNS = (
    "image_id",  # "<source_id>:<upstream relative path>", unique, stable across runs
    "source_id",  # key under ingest.sources in parameters_ingest.yml
    "covid_source",  # one of COVID_SOURCES
    "url",  # where the file was downloaded from
    "upstream_path",  # path inside the upstream layout
    "patient_id",  # upstream id as given (curate namespaces it); may be empty
    "age",  # years as float, NaN when unknown
    "sex",  # "M", "F" or "" when unknown
    "view",  # upstream view string as given (curate harmonises)
    "label",  # one of RAW_LABELS
    "finding",  # raw upstream finding string
    "license",
    "is_pediatric_flag",  # bool: the source itself flags the image as pediatric (armiro "p")
    "flags",  # ";"-separated source-specific flags (armiro: "normal_looking", "pediatric")
    "sha256",  # of the stored file
    "width",
    "height",
    "path",  # stored file: <image store>/<sha256[:2]>/<sha256><ext>
)

# One row per lung-mask file ingested for an image (catalog: raw_mask_index).
RAW_MASK_INDEX_COLUMNS = (
    "image_id",  # the image this mask belongs to (raw_index.image_id)
    "source_id",
    "structure",  # "left_lung", "right_lung" or "both_lungs"
    "url",
    "sha256",
    "path",  # stored mask file
    "offset_top",  # mask crops (GeneralBlockchain) sit at this offset in the image; else 0
    "offset_left",
    "scale_to_image",  # bool: the mask must be resized to the image size (Shenzhen quirk)
)

# Curated index (catalog: curated_index): RAW_INDEX_COLUMNS plus these.
CURATED_EXTRA_COLUMNS = (
    "view_harmonised",
    "age_years",
    "patient_group",  # patients linked across sources through duplicates
    "duplicate_group",
    "duplicate_count",
    "split",  # one of SPLITS
)

# Model-ready images (catalog: model_input_index).
MODEL_INPUT_COLUMNS = (
    "image_id",
    "path",  # 3-channel PNG
    "lung_mask_path",
    "label",
    "split",
    "mask_area",  # fraction of the source image covered by the post-processed lung mask
    "roi_fallback",  # True when the full image was used instead of the lung ROI
)
