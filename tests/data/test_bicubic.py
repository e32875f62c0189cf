"""bicubic_downscale: MATLAB's imresize (antialiased cubic), rounded to uint8, as BasicSR's LR images."""
import numpy as np

from losses_plugin.data.bicubic import bicubic_downscale


def test_constant_stays_exact_and_a_ramp_is_sampled_at_the_pixel_centres_then_rounded():
    """A cubic kernel reproduces linear functions, so away from the border output pixel j of a
    horizontal ramp ``10 + 2.2 x`` downscaled by 4 is the ramp at x = 4 (j + 0.5) - 0.5, 13.3 + 8.8 j,
    rounded (30.9 -> 31, not 30). Checked where that value is 0.1 or more from a half, since the uint8
    input ramp is itself rounded."""
    constant = np.full((16, 16, 3), 137, np.uint8)
    assert np.array_equal(bicubic_downscale(constant, 4), np.full((4, 4, 3), 137, np.uint8))
    x = np.arange(48, dtype=np.float64)
    ramp = np.broadcast_to(10 + 2.2 * x, (16, 48))[..., None].repeat(3, axis=2)
    lr = bicubic_downscale(np.round(ramp).astype(np.uint8), 4)  # the ramp rounded: error < 0.5 per pixel
    assert lr.shape == (4, 12, 3) and lr.dtype == np.uint8
    expected = {2: 31, 3: 40, 6: 66, 7: 75, 8: 84}  # 30.9, 39.7, 66.1, 74.9, 83.7
    assert {j: lr[1:3, j].tolist() for j in expected} == {j: [[v] * 3] * 2 for j, v in expected.items()}


def test_the_cubic_kernels_overshoot_at_a_hard_edge_is_clipped_to_0_and_255():
    """The cubic kernel's negative lobes ring past black and white next to a hard edge; uint8 keeps 0 and 255
    there instead of wrapping around."""
    img = np.zeros((16, 32, 3), np.uint8)
    img[:, 16:] = 255
    img[:, 18] = 0  # a dark line just inside the white side rings below 0 beside it
    img[:, 12] = 255  # and a bright line inside the black side rings above 255
    lr = bicubic_downscale(img, 2)  # row 0 before rounding: 0 0 0 0 -3.0 28.9 ... 147.4 264.0 255 ...
    assert (lr[:, :5] == 0).all()  # column 4 rang to -3: 0, not 253
    assert (lr[:, 10:] == 255).all()  # column 10 rang to 264: 255, not 8
    assert lr[0, 5:10, 0].tolist() == [29, 108, 11, 209, 147]
