"""Shipped training presets (JSON): <dataset>_<modality>.json."""
