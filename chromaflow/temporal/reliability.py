"""Per-pixel reliability of a colour carried along the flow.

Three cues, each in ``[0, 1]``, multiplied:

* forward-backward consistency: following the flow to the other frame and
  back should return to the start (occlusions and flow errors break this);
* luminance agreement: the warped previous luminance should match the current
  one (a colour is carried with the surface it belongs to);
* borders: flow that points outside the frame has nothing to carry.
"""

from __future__ import annotations

import cv2
import numpy as np

from chromaflow.temporal.warp import backward_warp, valid_mask


def fb_consistency(flow_cur_to_prev: np.ndarray, flow_prev_to_cur: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """``exp(-|f + b(x + f)|^2 / (sigma^2 + 0.05 (|f|^2 + |b|^2)))``, ``(H, W)`` ``float32``.

    Args:
        flow_cur_to_prev: ``(H, W, 2)`` flow from the current frame to the previous one.
        flow_prev_to_cur: ``(H, W, 2)`` flow from the previous frame to the current one.
        sigma: tolerated round-trip error in pixels (grows with motion, as in
            Ruder et al.'s occlusion test).
    """
    back = backward_warp(flow_prev_to_cur, flow_cur_to_prev)
    err = np.sum((flow_cur_to_prev + back) ** 2, axis=-1)
    scale = sigma * sigma + 0.05 * (np.sum(flow_cur_to_prev**2, axis=-1) + np.sum(back**2, axis=-1))
    return np.exp(-err / scale).astype(np.float32)


def luminance_agreement(
    lightness_cur: np.ndarray,
    lightness_prev_warped: np.ndarray,
    tolerance: float = 6.0,
    edge_slack: float = 0.5,
) -> np.ndarray:
    """``exp(-(dL / tol)^2)`` with ``dL`` the Lab lightness difference; ``(H, W)`` ``float32``.

    The tolerance grows with the local gradient (``tol = tolerance + edge_slack
    * |grad L|``, gradient in L units per pixel): at a sharp edge a sub-pixel
    flow error changes the warped lightness a lot while the colour carried is
    still right, whereas a real occlusion changes lightness in flat areas too.

    Args:
        lightness_cur: ``(H, W)`` L in ``[0, 100]``.
        lightness_prev_warped: the previous frame's L warped onto the current frame.
        tolerance: difference in L units at which reliability drops to ``1/e`` in flat areas.
        edge_slack: extra tolerance per unit of gradient magnitude.
    """
    gx = cv2.Sobel(lightness_cur, cv2.CV_32F, 1, 0, ksize=3, scale=0.125)
    gy = cv2.Sobel(lightness_cur, cv2.CV_32F, 0, 1, ksize=3, scale=0.125)
    tol = tolerance + edge_slack * np.sqrt(gx * gx + gy * gy)
    d = (lightness_cur - lightness_prev_warped) / tol
    return np.exp(-(d * d)).astype(np.float32)


def step_reliability(
    flow_cur_to_prev: np.ndarray,
    flow_prev_to_cur: np.ndarray,
    lightness_cur: np.ndarray,
    lightness_prev: np.ndarray,
    fb_sigma: float = 1.0,
    luminance_tolerance: float = 6.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Reliability of one propagation step, and its luminance-agreement part.

    Args:
        flow_cur_to_prev, flow_prev_to_cur: ``(H, W, 2)`` flows between the two frames.
        lightness_cur, lightness_prev: ``(H, W)`` Lab L of the two frames.

    Returns:
        ``(reliability, agreement)``, both ``(H, W)`` ``float32`` in ``[0, 1]``:
        the product of forward-backward consistency, luminance agreement and
        the in-frame test; and the luminance agreement alone (whether the
        carried surface still looks the same, used to tell a broken chain from
        new content).
    """
    agreement = luminance_agreement(
        lightness_cur, backward_warp(lightness_prev, flow_cur_to_prev), luminance_tolerance
    )
    rel = fb_consistency(flow_cur_to_prev, flow_prev_to_cur, fb_sigma) * agreement
    rel *= valid_mask(flow_cur_to_prev)
    return rel.astype(np.float32), agreement


def warp_reliability(
    flow_cur_to_prev: np.ndarray,
    flow_prev_to_cur: np.ndarray,
    lightness_cur: np.ndarray,
    lightness_prev: np.ndarray,
    fb_sigma: float = 1.0,
    luminance_tolerance: float = 6.0,
) -> np.ndarray:
    """Confidence in ``[0, 1]`` that the previous frame's colour, warped, is right at each pixel.

    The first part of :func:`step_reliability`; ``(H, W)`` ``float32``.
    """
    return step_reliability(
        flow_cur_to_prev, flow_prev_to_cur, lightness_cur, lightness_prev, fb_sigma, luminance_tolerance
    )[0]
