"""`python -m export`: the same binary as `overfeat-export`."""

from export.bin import export_main

export_main.run()
