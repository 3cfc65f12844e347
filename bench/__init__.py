"""Benchmarks for the gateway: see README.md in this folder."""
