"""Reproducible experiments on the recurrent cell family (docs/VARIANTS.md)."""
