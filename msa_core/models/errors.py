"""The one error a model reference that cannot become a subject (or a game) raises.

It lives in its own module so that :mod:`.subject`, :mod:`.inputs` and :mod:`.probe` can all raise it
without importing one another.
"""

from __future__ import annotations

__all__ = ["ModelLoadError"]


class ModelLoadError(ValueError):
    """A model reference could not be turned into a subject (or a game); the message says why and what to do."""
