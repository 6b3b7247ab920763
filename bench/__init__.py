"""Benchmarks: `make bench` (or `python -m bench [name ...]`). One line per figure."""
