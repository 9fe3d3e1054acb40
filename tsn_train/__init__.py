"""tsn-train: segment-sampled datasets over tsn-prep stores and the two-stream TSN (next issue)."""
