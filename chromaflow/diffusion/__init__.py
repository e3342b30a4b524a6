"""Stable Diffusion pieces for the ``sd`` backends (pure torch and diffusers; no files, no videos).

* :mod:`~chromaflow.diffusion.loading`: the model's parts from a diffusers
  folder, a single-file checkpoint or a hub id, plus a ControlNet;
* :mod:`~chromaflow.diffusion.sampling`: DDIM with RePaint-style known latents,
  the gray loss L_gray, image-to-image, ControlNet and inpainting inputs;
* :mod:`~chromaflow.diffusion.attention`: joint (extended) self-attention
  across keyframes and regional cross-attention for grounded phrases;
* :mod:`~chromaflow.diffusion.tiny`: a tiny random model in the diffusers
  layout for tests and docs.

Every module imports diffusers only when called, so chromaflow runs without it.
"""
