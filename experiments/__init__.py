"""The runner: Hydra entry points, shared Hydra/Lightning glue, recipes and benchmarks."""
