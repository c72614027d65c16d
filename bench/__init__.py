"""Benchmarks, one module per question; `make bench` runs them all."""
