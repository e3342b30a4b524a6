"""What the user gives to steer colours: references, palettes (prompts arrive later)."""

from chromaflow.guidance.conditions import Conditions, Reference
from chromaflow.guidance.palette import (
    PALETTE_SIZE,
    Palette,
    auto_palette,
    is_grayscale_image,
    palette_from_image,
    palette_from_video,
    palette_swatch,
    parse_hex_list,
    parse_palette_spec,
)
from chromaflow.guidance.references import load_reference

__all__ = [
    "PALETTE_SIZE",
    "Conditions",
    "Palette",
    "Reference",
    "auto_palette",
    "is_grayscale_image",
    "load_reference",
    "palette_from_image",
    "palette_from_video",
    "palette_swatch",
    "parse_hex_list",
    "parse_palette_spec",
]
