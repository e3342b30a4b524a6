"""The skin prior's pure parts (no models: the finder is a stub)."""

from __future__ import annotations

import numpy as np
import pytest

from chromaflow.guidance.skin import SKIN_AB, SkinPrior, pull_towards


def test_pull_towards_moves_by_weight_and_strength():
    ab = np.zeros((2, 3, 4, 2), np.float32)
    ab[..., 0] = -40.0
    weight = np.zeros((2, 3, 4), np.float32)
    weight[:, :, 0] = 1.0
    weight[:, :, 1] = 0.5
    out = pull_towards(ab, weight, (10.0, 20.0), 0.5)
    assert out.dtype == np.float32 and out.shape == ab.shape
    assert np.allclose(out[..., 0, :], (-15.0, 10.0))  # half-way
    assert np.allclose(out[..., 1, :], (-27.5, 5.0))  # a quarter of the way
    assert np.array_equal(out[..., 2:, :], ab[..., 2:, :])  # weight 0: unchanged
    assert np.allclose(pull_towards(ab, np.ones((2, 3, 4)), (10.0, 20.0), 1.0), (10.0, 20.0))


def test_skin_prior_only_where_the_finder_sees_skin():
    seen = []

    def finder(gray):
        seen.append(gray.dtype)
        w = np.zeros(gray.shape, np.float32)
        if gray.mean() > 100:  # a bright frame has a "face" in its top rows
            w[:4] = 1.0
        return w

    light = np.stack([np.full((8, 8), 80.0), np.full((8, 8), 10.0)]).astype(np.float32)
    ab = np.full((2, 8, 8, 2), -30.0, np.float32)
    out = SkinPrior(1.0, finder).apply(light, ab)
    assert seen == [np.uint8, np.uint8]
    assert np.allclose(out[0, :4], SKIN_AB) and np.allclose(out[0, 4:], -30.0)
    assert np.array_equal(out[1], ab[1])
    assert np.array_equal(ab, np.full((2, 8, 8, 2), -30.0, np.float32))  # the input is not changed in place


@pytest.mark.parametrize("strength", [0.0, -0.1, 1.5])
def test_skin_prior_strength_is_checked(strength):
    with pytest.raises(ValueError, match="strength"):
        SkinPrior(strength, lambda g: np.zeros(g.shape, np.float32))
