"""tsn-prep: videos -> RGB frames, TV-L1 flow and warped flow, as JPEGs in LMDB shards."""

__version__ = "0.1.0"
