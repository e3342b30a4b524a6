"""Colour core: Lab conversions, the luminance rule, guided chroma upsampling."""

from chromaflow.color.lab import (
    LUMA_WEIGHTS,
    compose_rgb,
    gray_to_lightness,
    lab_to_rgb,
    lightness_to_gray,
    lightness_to_gray8,
    rgb_to_gray,
    rgb_to_lab,
)
from chromaflow.color.upsample import guided_upsample

__all__ = [
    "LUMA_WEIGHTS",
    "compose_rgb",
    "gray_to_lightness",
    "guided_upsample",
    "lab_to_rgb",
    "lightness_to_gray",
    "lightness_to_gray8",
    "rgb_to_gray",
    "rgb_to_lab",
]
