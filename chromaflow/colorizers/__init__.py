"""Colorizers: gray lightness + conditions -> chroma."""

from chromaflow.colorizers.base import Colorizer
from chromaflow.colorizers.luminance_lut import LuminanceLUTColorizer

__all__ = ["Colorizer", "LuminanceLUTColorizer"]
