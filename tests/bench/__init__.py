"""Benchmarks (`make bench`, `make bench-scale`) and the harness they share with the lab tests."""

PROBE_STARTED = "probing"  # the probe's one stderr line once its first request is on the wire
