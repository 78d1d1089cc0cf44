"""Data steps: load prices, clean, engineer features, select, split, store feature sets (also batched), ingest."""
