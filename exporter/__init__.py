"""Prometheus exporter for N-able N-central patch-comparison reports."""

__version__ = "0.1.0"
