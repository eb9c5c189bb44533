"""Hydra/Lightning glue shared by the entry points."""
