"""Keyframe colorizers: the interface and the embedded model."""

from chromaflow.colorizers.base import Colorizer
from chromaflow.colorizers.chroma_model import ChromaModel, Guidance, ModelColorizer, ModelOptions

__all__ = ["ChromaModel", "Colorizer", "Guidance", "ModelColorizer", "ModelOptions"]
