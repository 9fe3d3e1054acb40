"""Facts both packages read: how each modality is stored, a stored video's metadata record, the
image codec and the list format. ``tsn_prep`` (videos -> store) and ``tsn_train`` (store ->
models) import this package; it imports neither of them, nor torch."""
