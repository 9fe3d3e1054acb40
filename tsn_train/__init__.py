"""tsn-train: segment-sampled datasets over tsn-prep stores, the TSN streams, their training,
the paper's test protocol, late fusion and prediction from raw videos."""
