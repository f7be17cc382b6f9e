"""A package run with ``-m calc``."""

from .ops import OPERATIONS, apply

__all__ = ["OPERATIONS", "apply"]
