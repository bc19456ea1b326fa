"""Console scripts of the pipelines package (absl flags live only here)."""
