"""Curation: harmonise the raw index, filter, de-duplicate, group patients and split."""
