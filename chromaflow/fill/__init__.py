"""Fill steps: chroma completion from reliable hints."""

from chromaflow.fill.base import ChromaFill
from chromaflow.fill.levin import LevinFill, levin_colorize

__all__ = ["ChromaFill", "LevinFill", "levin_colorize"]
