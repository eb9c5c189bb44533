"""Benchmarks: each module measures a target against a reference in the same run."""
