"""Metrics: likelihood bounds, memorisation, and (later) image, text and tabular quality metrics."""
