"""Tests of the source adapters for the mirrored sources."""
