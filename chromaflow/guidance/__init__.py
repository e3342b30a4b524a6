"""What the user gives to steer colours: references, palettes, prompts; semantic correspondence."""

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
from chromaflow.guidance.prompt import ColorPhrase, ParsedPrompt, parse_prompt
from chromaflow.guidance.references import load_reference

__all__ = [
    "PALETTE_SIZE",
    "ColorPhrase",
    "Conditions",
    "Palette",
    "ParsedPrompt",
    "Reference",
    "auto_palette",
    "is_grayscale_image",
    "load_reference",
    "palette_from_image",
    "palette_from_video",
    "palette_swatch",
    "parse_hex_list",
    "parse_palette_spec",
    "parse_prompt",
]
