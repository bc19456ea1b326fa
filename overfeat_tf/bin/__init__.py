"""Console scripts of overfeat_tf: thin absl mains (absl flags live only here)."""
