"""Evaluation library: metrics, bootstrap CIs, thresholds, plots, localisation, LIME, reports."""
