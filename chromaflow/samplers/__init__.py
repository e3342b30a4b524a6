"""Samplers for the embedded chroma diffusion model."""

from chromaflow.samplers.ddim import DDIMSampler, SamplerOptions
from chromaflow.samplers.schedule import alpha_bar, q_sample

__all__ = ["DDIMSampler", "SamplerOptions", "alpha_bar", "q_sample"]
