"""Structured checks of the composed config (filled in with the reliability work)."""
from __future__ import annotations

from omegaconf import DictConfig


def validate(cfg: DictConfig) -> None:
    return None
