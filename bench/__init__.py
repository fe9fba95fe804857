"""Load generation and measurements (make bench)."""
