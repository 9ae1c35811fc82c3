"""Benchmarks against reference implementations (`make bench`, never part of `make test`)."""
