"""Console script of the export package: `overfeat-export` (absl flags live only here)."""
