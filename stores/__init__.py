"""Storage backends behind small protocols: prices (Parquet, MongoDB) and the feature store."""
