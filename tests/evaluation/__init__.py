"""Tests of the evaluation library."""
