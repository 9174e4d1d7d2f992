"""Tests of BoundaryDoULoss against values worked out by hand and an independent loop-based NumPy re-computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from common.losses import BoundaryDoULoss

SMOOTH = 1e-5


def _mask(shape: tuple[int, ...], *regions: tuple[slice, ...]) -> torch.Tensor:
    """A float64 binary mask of ``shape`` with ones in each region (index tuples)."""
    mask = torch.zeros(shape, dtype=torch.float64)
    for region in regions:
        mask[region] = 1
    return mask


def _bn(x: torch.Tensor) -> torch.Tensor:
    """Add batch and channel axes: spatial -> 11 spatial."""
    return x[None, None]


def _alpha(boundary: float, size: float, cap: float | None = None) -> float:
    alpha = 2 * (1 - (boundary + SMOOTH) / (size + SMOOTH)) - 1
    return alpha if cap is None else min(alpha, cap)


# ---------------------------------------------------------------- independent NumPy re-computation (plain loops)


def _np_boundary_counts(g: np.ndarray) -> tuple[int, int]:
    """C and S of one class, g of shape (B, *spatial): a voxel is interior when all its 2*d axis neighbours are 1."""
    boundary = size = 0
    spatial = g.shape[1:]
    for index in np.ndindex(*g.shape):
        if g[index] == 0:
            continue
        size += 1
        b, pos = index[0], list(index[1:])
        interior = True
        for axis in range(len(spatial)):
            for step in (-1, 1):
                q = list(pos)
                q[axis] += step
                if not 0 <= q[axis] < spatial[axis] or g[(b, *q)] == 0:
                    interior = False
        if not interior:
            boundary += 1
    return boundary, size


def _np_loss(p: np.ndarray, g: np.ndarray, alpha_cap: float | None = 0.8, first_class: int = 0) -> np.ndarray:
    """Per-class Boundary DoU loss of probabilities p and one-hot g (B, N, *spatial), sums over batch and space."""
    out = []
    for c in range(first_class, p.shape[1]):
        boundary, size = _np_boundary_counts(g[:, c])
        alpha = 1 - (boundary + SMOOTH) / (size + SMOOTH)
        alpha = 2 * alpha - 1
        if alpha_cap is not None:
            alpha = min(alpha, alpha_cap)
        pp = gg = pg = 0.0
        for index in np.ndindex(*p[:, c].shape):
            pv, gv = float(p[:, c][index]), float(g[:, c][index])
            pp += pv * pv
            gg += gv * gv
            pg += pv * gv
        out.append((pp + gg - 2 * pg + SMOOTH) / (pp + gg - (1 + alpha) * pg + SMOOTH))
    return np.array(out)


def _np_softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _labels_2d() -> torch.Tensor:
    """(2, 1, 9, 10) labels with a compact blob, a thin line and scattered pixels, so alphas differ per class."""
    labels = torch.zeros(2, 1, 9, 10, dtype=torch.long)
    labels[0, 0, 1:7, 2:8] = 1  # 6x6 blob
    labels[0, 0, 8, :] = 2  # line along the bottom border
    labels[1, 0, 0:5, 0:5] = 1  # 5x5 blob in the corner
    labels[1, 0, 6, 3] = 2
    labels[1, 0, 3:5, 7:9] = 2  # 2x2 square
    return labels


# ---------------------------------------------------------------- boundary count C, alpha, hand-worked loss values


def test_line_2d_is_all_boundary_and_gives_dice_like_loss():
    # 1-pixel-wide line, row 2, columns 1..3 of a 5x5 image: each pixel misses its upper and lower neighbour,
    # so C = S = 3, alpha = 1 - (3+s)/(3+s) = 0 -> 2*0 - 1 = -1 exactly.
    g = _mask((5, 5), (2, slice(1, 4)))
    loss_fn = BoundaryDoULoss(alpha_cap=None)
    c, s = loss_fn.boundary_statistics(_bn(g))
    assert (c.item(), s.item()) == (3, 3)
    assert loss_fn.adaptive_alpha(_bn(g)).item() == -1.0
    # with alpha = -1 the denominator is sum p^2 + sum g^2 + s: L = 1 - 2 sum pg / (sum p^2 + sum g^2 + s).
    # p = 0.5 on the line and at pixel (0, 0): sum p^2 = 4 * 0.25 = 1, sum g^2 = 3, sum pg = 3 * 0.5 = 1.5
    # L = (1 + 3 - 3 + s) / (1 + 3 + s) = (1 + s) / (4 + s) ~ 0.25
    p = 0.5 * g
    p[0, 0] = 0.5
    assert loss_fn(_bn(p), _bn(g)).item() == pytest.approx((1 + SMOOTH) / (4 + SMOOTH), abs=1e-12)


def test_square_2x2_is_all_boundary():
    # each pixel of a 2x2 square has 2 of its 4 neighbours in the square: C = S = 4, alpha = -1
    g = _bn(_mask((6, 6), (slice(2, 4), slice(2, 4))))
    c, s = BoundaryDoULoss.boundary_statistics(g)
    assert (c.item(), s.item()) == (4, 4)
    assert BoundaryDoULoss().adaptive_alpha(g).item() == -1.0


def test_plus_2d_has_one_interior_pixel_and_hand_worked_loss():
    # plus of 5 pixels centred at (2, 2) in 5x5: only the centre has all 4 neighbours, C = 4, S = 5
    # alpha = 2 * (1 - 4/5) - 1 = -0.6 (up to smooth)
    g = _mask((5, 5), (2, slice(1, 4)), (slice(1, 4), 2))
    loss_fn = BoundaryDoULoss()
    c, s = loss_fn.boundary_statistics(_bn(g))
    assert (c.item(), s.item()) == (4, 5)
    assert loss_fn.adaptive_alpha(_bn(g)).item() == pytest.approx(-0.6, abs=1e-5)
    # p = 0.5 on the plus: sum p^2 = 1.25, sum g^2 = 5, sum pg = 2.5
    # L = (1.25 + 5 - 5) / (6.25 - (1 - 0.6) * 2.5) = 1.25 / 5.25 = 5/21
    p = 0.5 * g
    expected = (1.25 + SMOOTH) / (6.25 - (1 + _alpha(4, 5)) * 2.5 + SMOOTH)
    assert expected == pytest.approx(5 / 21, abs=1e-5)
    assert loss_fn(_bn(p), _bn(g)).item() == pytest.approx(expected, abs=1e-12)


def test_square_6x6_in_8x8_and_its_background_ring():
    # 6x6 square at rows/cols 1..6 of 8x8: interior = rows/cols 2..5 = 16 pixels, C = 36 - 16 = 20, S = 36
    # alpha = 2 * (1 - 20/36) - 1 = 32/36 - 1 = -1/9 (the cap 0.8 is not reached: a square needs side ~40 for that)
    # background: the 1-pixel ring along the image border, 64 - 36 = 28 pixels, all touch the border: C = S = 28
    fg = _mask((8, 8), (slice(1, 7), slice(1, 7)))
    g = torch.stack([1 - fg, fg])[None]
    c, s = BoundaryDoULoss.boundary_statistics(g)
    assert c.tolist() == [28, 20]
    assert s.tolist() == [28, 36]
    alpha = BoundaryDoULoss().adaptive_alpha(g)
    assert alpha.tolist() == pytest.approx([-1.0, -1 / 9], abs=1e-6)


def test_large_square_alpha_capped_and_uncapped():
    # 50x50 square in 52x52: C = 4*50 - 4 = 196, S = 2500, alpha = 1 - 2*196/2500 = 1 - 0.1568 = 0.8432 > 0.8
    g = _bn(_mask((52, 52), (slice(1, 51), slice(1, 51))))
    c, s = BoundaryDoULoss.boundary_statistics(g)
    assert (c.item(), s.item()) == (196, 2500)
    assert BoundaryDoULoss(alpha_cap=None).adaptive_alpha(g).item() == pytest.approx(0.8432, abs=1e-6)
    assert BoundaryDoULoss().adaptive_alpha(g).item() == pytest.approx(0.8, abs=1e-12)
    # p = 0.9 on the square: sum p^2 = 2025, sum g^2 = 2500, sum pg = 2250; numerator = 4525 - 4500 = 25
    # capped:   denominator = 4525 - 1.8 * 2250 = 475      -> L = 25/475 = 1/19 ~ 0.05263
    # uncapped: denominator = 4525 - 1.8432 * 2250 = 377.8 -> L = 25/377.8 ~ 0.06617
    p = 0.9 * g
    assert BoundaryDoULoss()(p, g).item() == pytest.approx(1 / 19, abs=1e-7)
    assert BoundaryDoULoss(alpha_cap=None)(p, g).item() == pytest.approx(25 / 377.8, abs=1e-7)


def test_object_touching_border_counts_border_pixels_as_boundary():
    # the whole 4x4 image is foreground: zero padding makes the 12 border pixels boundary, the 2x2 centre interior.
    # C = 12, S = 16, alpha = 2 * (1 - 12/16) - 1 = -0.5 (replicate padding would give C = 0 and alpha = 1)
    fg = torch.ones(4, 4, dtype=torch.float64)
    g = torch.stack([1 - fg, fg])[None]
    c, s = BoundaryDoULoss.boundary_statistics(g)
    assert c.tolist() == [0, 12]
    assert s.tolist() == [0, 16]
    # the background class is empty: S = C = 0, alpha = 1 - s/s = 0 -> -1
    assert BoundaryDoULoss().adaptive_alpha(g).tolist() == pytest.approx([-1.0, -0.5], abs=1e-6)
    # a 4x4 object in the corner of 6x6: interior rows/cols 1..2 only (row 0 and column 0 touch the border), C = 12
    corner = _bn(_mask((6, 6), (slice(0, 4), slice(0, 4))))
    assert BoundaryDoULoss.boundary_statistics(corner)[0].item() == 12


def test_empty_class_loss_is_one_with_zero_gradient():
    # g = 0: sum g^2 = sum pg = 0, alpha = -1, L = (sum p^2 + s) / (sum p^2 + s) = 1 whatever p is, gradient 0
    torch.manual_seed(0)
    p = torch.rand(2, 1, 5, 5, dtype=torch.float64, requires_grad=True)
    loss = BoundaryDoULoss()(p, torch.zeros_like(p))
    assert loss.item() == pytest.approx(1.0, abs=1e-15)
    loss.backward()
    assert torch.allclose(p.grad, torch.zeros_like(p.grad), atol=1e-15)

    # the same inside a multi-class loss: class 2 absent from the batch has L_2 = 1 and no gradient through it
    logits = torch.randn(2, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 2, (2, 1, 5, 5))
    per_class = BoundaryDoULoss(softmax=True, to_onehot_y=True, reduction="none")(logits, labels)
    assert per_class[2].item() == pytest.approx(1.0, abs=1e-15)
    (grad,) = torch.autograd.grad(per_class[2], logits)
    assert torch.allclose(grad, torch.zeros_like(grad), atol=1e-15)


def test_3d_cross_kernel_counts():
    # 3x3x3 cube in 5x5x5: with the 6-neighbour cross only the centre voxel is interior: C = 26, S = 27
    # alpha = 2 * (1 - 26/27) - 1 = -25/27 (counting slice by slice in 2D would give 3 interior voxels, C = 24)
    cube = _bn(_mask((5, 5, 5), (slice(1, 4),) * 3))
    c, s = BoundaryDoULoss.boundary_statistics(cube)
    assert (c.item(), s.item()) == (26, 27)
    assert BoundaryDoULoss().adaptive_alpha(cube).item() == pytest.approx(-25 / 27, abs=1e-6)
    # 4x4x4 cube in 6x6x6: interior 2x2x2 = 8, C = 56, S = 64, alpha = 2 * (8/64) - 1 = -0.75
    cube4 = _bn(_mask((6, 6, 6), (slice(1, 5),) * 3))
    assert [t.item() for t in BoundaryDoULoss.boundary_statistics(cube4)] == [56, 64]
    assert BoundaryDoULoss().adaptive_alpha(cube4).item() == pytest.approx(-0.75, abs=1e-6)
    # 3D plus (centre and its 6 face neighbours): the centre is interior with the cross kernel although none of its
    # 20 edge/corner neighbours is set (a full 3x3x3 kernel would make it boundary): C = 6, S = 7, alpha = -5/7
    plus = torch.zeros(5, 5, 5, dtype=torch.float64)
    plus[1:4, 2, 2] = plus[2, 1:4, 2] = plus[2, 2, 1:4] = 1
    assert [t.item() for t in BoundaryDoULoss.boundary_statistics(_bn(plus))] == [6, 7]
    assert BoundaryDoULoss().adaptive_alpha(_bn(plus)).item() == pytest.approx(-5 / 7, abs=1e-6)
    # loss with p = 0.5 on the cube: sum p^2 = 6.75, sum g^2 = 27, sum pg = 13.5
    # L = (6.75 + 27 - 27) / (33.75 - (2/27) * 13.5) = 6.75 / 32.75 = 27/131
    assert BoundaryDoULoss()(0.5 * cube, cube).item() == pytest.approx(27 / 131, abs=1e-6)


def test_hand_worked_two_class_1x2x4x4():
    # foreground: 2x2 square in the centre of 4x4 (C = S = 4); background: the 12-pixel ring, all on the image
    # border (C = S = 12); both alphas are -1, so L_c = (sum p^2 + sum g^2 - 2 sum pg + s) / (sum p^2 + sum g^2 + s).
    # p_fg = 0.75 on the square, 0.25 elsewhere; p_bg = 1 - p_fg
    # fg: sum p^2 = 4 * 0.5625 + 12 * 0.0625 = 3, sum g^2 = 4,  sum pg = 3 -> L = (3 + 4 - 6) / 7 = 1/7
    # bg: sum p^2 = 4 * 0.0625 + 12 * 0.5625 = 7, sum g^2 = 12, sum pg = 9 -> L = (7 + 12 - 18) / 19 = 1/19
    # mean = (1/7 + 1/19) / 2 = 13/133 ~ 0.097744
    fg = _mask((4, 4), (slice(1, 3), slice(1, 3)))
    g = torch.stack([1 - fg, fg])[None]
    p_fg = 0.25 + 0.5 * fg
    p = torch.stack([1 - p_fg, p_fg])[None]
    expected = [(1 + SMOOTH) / (19 + SMOOTH), (1 + SMOOTH) / (7 + SMOOTH)]
    per_class = BoundaryDoULoss(reduction="none")(p, g)
    assert per_class.tolist() == pytest.approx(expected, abs=1e-12)
    assert BoundaryDoULoss()(p, g).item() == pytest.approx(sum(expected) / 2, abs=1e-12)
    assert BoundaryDoULoss()(p, g).item() == pytest.approx(13 / 133, abs=1e-5)
    assert BoundaryDoULoss(reduction="sum")(p, g).item() == pytest.approx(sum(expected), abs=1e-12)
    np.testing.assert_allclose(per_class.numpy(), _np_loss(p.numpy(), g.numpy()), rtol=1e-12)
    # include_background=False keeps the foreground term only
    assert BoundaryDoULoss(include_background=False)(p, g).item() == pytest.approx(1 / 7, abs=1e-5)


# ---------------------------------------------------------------- comparison with the NumPy re-computation


@pytest.mark.parametrize("alpha_cap", [0.8, None, -0.3])
@pytest.mark.parametrize("include_background", [True, False])
def test_softmax_three_classes_matches_numpy(alpha_cap, include_background):
    torch.manual_seed(1)
    labels = _labels_2d()
    logits = 2 * torch.randn(2, 3, 9, 10, dtype=torch.float64)
    loss_fn = BoundaryDoULoss(
        include_background=include_background, to_onehot_y=True, softmax=True, alpha_cap=alpha_cap, reduction="none"
    )
    got = loss_fn(logits, labels).numpy()
    g = np.eye(3)[labels[:, 0].numpy()].transpose(0, 3, 1, 2)
    expected = _np_loss(_np_softmax(logits.numpy()), g, alpha_cap, first_class=0 if include_background else 1)
    np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_sigmoid_multilabel_matches_numpy():
    # two overlapping binary masks (multi-label): no one-hot constraint across channels
    torch.manual_seed(2)
    g = torch.zeros(2, 2, 7, 8, dtype=torch.float64)
    g[0, 0, 1:6, 1:6] = 1
    g[0, 1, 3:7, 4:8] = 1
    g[1, 0, 2, :] = 1
    logits = torch.randn(2, 2, 7, 8, dtype=torch.float64)
    got = BoundaryDoULoss(sigmoid=True, reduction="none")(logits, g).numpy()
    expected = _np_loss(1 / (1 + np.exp(-logits.numpy())), g.numpy())
    np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_3d_softmax_matches_numpy():
    torch.manual_seed(3)
    labels = torch.zeros(2, 1, 5, 6, 4, dtype=torch.long)
    labels[0, 0, 1:4, 1:5, 0:3] = 1
    labels[1, 0, 0:5, 0:6, 2:4] = 2
    labels[1, 0, 2, 2, 0] = 1
    logits = torch.randn(2, 3, 5, 6, 4, dtype=torch.float64)
    got = BoundaryDoULoss(softmax=True, to_onehot_y=True)(logits, labels).item()
    g = np.eye(3)[labels[:, 0].numpy()].transpose(0, 4, 1, 2, 3)
    assert got == pytest.approx(_np_loss(_np_softmax(logits.numpy()), g).mean(), rel=1e-10)


def test_label_and_onehot_targets_agree():
    torch.manual_seed(4)
    labels = _labels_2d()
    logits = torch.randn(2, 3, 9, 10)
    onehot = torch.nn.functional.one_hot(labels[:, 0], 3).permute(0, 3, 1, 2).float()
    from_labels = BoundaryDoULoss(softmax=True, to_onehot_y=True)(logits, labels)
    from_labels_no_channel = BoundaryDoULoss(softmax=True, to_onehot_y=True)(logits, labels[:, 0])
    from_onehot = BoundaryDoULoss(softmax=True)(logits, onehot)
    assert from_labels.item() == pytest.approx(from_onehot.item(), abs=1e-7)
    assert from_labels_no_channel.item() == pytest.approx(from_onehot.item(), abs=1e-7)


# ---------------------------------------------------------------- gradients


def test_gradcheck_softmax_logits():
    torch.manual_seed(5)
    labels = torch.tensor([[[[0, 1, 1, 0], [0, 1, 1, 2], [0, 0, 2, 2], [0, 0, 0, 2]]]])
    logits = torch.randn(1, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    loss_fn = BoundaryDoULoss(softmax=True, to_onehot_y=True)
    assert torch.autograd.gradcheck(lambda x: loss_fn(x, labels), (logits,), fast_mode=True)
    logits3d = torch.randn(1, 2, 3, 3, 2, dtype=torch.float64, requires_grad=True)
    labels3d = torch.zeros(1, 1, 3, 3, 2, dtype=torch.long)
    labels3d[0, 0, :2, :2, :] = 1
    assert torch.autograd.gradcheck(lambda x: loss_fn(x, labels3d), (logits3d,), fast_mode=True)


def test_perfect_prediction_gives_near_zero_loss():
    # p == g: sum p^2 = sum g^2 = sum pg = S, numerator = s, denominator = (1 - alpha) * S + s,
    # L_c = s / ((1 - alpha) S + s). 6x6 square in 8x8: fg alpha = -1/9, S = 36 -> s / (40 + s);
    # bg ring alpha = -1, S = 28 -> s / (56 + s); mean ~ 2.1e-7
    fg = _mask((8, 8), (slice(1, 7), slice(1, 7)))
    g = torch.stack([1 - fg, fg])[None]
    loss = BoundaryDoULoss(reduction="none")(g.clone(), g)
    assert loss.tolist() == pytest.approx([SMOOTH / (56 + SMOOTH), SMOOTH / (40 + SMOOTH)], rel=1e-5)
    assert loss.mean().item() < 1e-6


def test_gradient_steps_on_logits_decrease_loss():
    torch.manual_seed(6)
    labels = _labels_2d()
    logits = torch.randn(2, 3, 9, 10, requires_grad=True)
    loss_fn = BoundaryDoULoss(softmax=True, to_onehot_y=True)
    optimizer = torch.optim.SGD([logits], lr=50.0)  # the gradient of a whole-batch ratio is small
    losses = []
    for _ in range(20):
        optimizer.zero_grad()
        loss = loss_fn(logits, labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[1] < losses[0]
    assert losses[-1] < 0.5 * losses[0]


# ---------------------------------------------------------------- batch-global statistics


def test_batch_statistics_are_pooled_not_averaged():
    # item 1: 6x6 square in 8x8 (C = 20, S = 36), p = 0.5 on it; item 2: a single pixel (C = S = 1), p = 0.
    # pooled: C = 21, S = 37, alpha = 1 - 42/37 = -5/37, sum p^2 = 9, sum g^2 = 37, sum pg = 18
    #   L = (9 + 37 - 36) / (46 - (32/37) * 18) = 10 / (1126/37) = 370/1126 = 185/563 ~ 0.3286
    # mean of per-item losses: item 1 alpha = -1/9, L1 = 9 / (45 - (8/9) * 18) = 9/29; item 2 L2 = 1 / 1 = 1
    #   (9/29 + 1) / 2 = 19/29 ~ 0.6552
    g1 = _mask((8, 8), (slice(1, 7), slice(1, 7)))
    g2 = _mask((8, 8), (3, 3))
    g = torch.stack([g1, g2])[:, None]
    p = torch.stack([0.5 * g1, torch.zeros(8, 8, dtype=torch.float64)])[:, None]
    loss_fn = BoundaryDoULoss()
    batch = loss_fn(p, g).item()
    assert batch == pytest.approx(185 / 563, abs=1e-6)
    per_item = [loss_fn(p[i : i + 1], g[i : i + 1]).item() for i in range(2)]
    assert per_item == pytest.approx([9 / 29, 1.0], abs=1e-6)
    assert np.mean(per_item) == pytest.approx(19 / 29, abs=1e-6)
    assert abs(batch - np.mean(per_item)) > 0.3
    # the same statistics from one image holding both items side by side, split by a background column so no
    # object grows across the seam: identical sums, boundary and foreground counts, hence the identical loss
    gap = torch.zeros(1, 1, 8, 1, dtype=torch.float64)
    side_by_side = loss_fn(torch.cat([p[:1], gap, p[1:]], dim=3), torch.cat([g[:1], gap, g[1:]], dim=3))
    assert side_by_side.item() == pytest.approx(batch, abs=1e-12)


# ---------------------------------------------------------------- precision, devices, reductions


def test_reductions_and_output_dtype():
    torch.manual_seed(7)
    logits = torch.randn(2, 3, 9, 10)
    labels = _labels_2d()
    none = BoundaryDoULoss(softmax=True, to_onehot_y=True, reduction="none")(logits, labels)
    assert none.shape == (3,)
    assert none.dtype == torch.float32
    mean = BoundaryDoULoss(softmax=True, to_onehot_y=True)(logits, labels)
    total = BoundaryDoULoss(softmax=True, to_onehot_y=True, reduction="sum")(logits, labels)
    assert mean.shape == total.shape == ()
    assert mean.item() == pytest.approx(none.mean().item(), abs=1e-7)
    assert total.item() == pytest.approx(none.sum().item(), abs=1e-6)


def test_half_precision_and_autocast_sum_in_float32():
    torch.manual_seed(8)
    logits = torch.randn(2, 3, 9, 10)
    labels = _labels_2d()
    loss_fn = BoundaryDoULoss(softmax=True, to_onehot_y=True)
    reference = loss_fn(logits, labels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = loss_fn(logits.bfloat16(), labels)
    half = loss_fn(logits.half(), labels)
    for value in (autocast, half):
        assert value.dtype == torch.float32
        assert value.item() == pytest.approx(reference.item(), abs=1e-2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    torch.manual_seed(9)
    logits = torch.randn(2, 3, 6, 7, 5, requires_grad=True)
    labels = torch.randint(0, 3, (2, 1, 6, 7, 5))
    loss_fn = BoundaryDoULoss(softmax=True, to_onehot_y=True, reduction="none")
    cpu = loss_fn(logits, labels)
    cuda = loss_fn(logits.detach().cuda(), labels.cuda())
    assert torch.allclose(cuda.cpu(), cpu.detach(), atol=1e-6)
    with torch.autocast("cuda", dtype=torch.float16):
        amp = loss_fn(logits.detach().cuda(), labels.cuda())
    assert amp.dtype == torch.float32
    assert torch.allclose(amp.cpu(), cpu.detach(), atol=1e-2)


# ---------------------------------------------------------------- argument and input validation


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"sigmoid": True, "softmax": True}, ValueError, "Incompatible values"),
        ({"softmax": True, "other_act": torch.tanh}, ValueError, "Incompatible values"),
        ({"other_act": "tanh"}, TypeError, "other_act must be None or callable"),
        ({"smooth": 0.0}, ValueError, "smooth must be positive"),
        ({"smooth": "1e-5"}, TypeError, "smooth must be a real number"),
        ({"alpha_cap": 1.5}, ValueError, r"alpha_cap must lie in \[-1, 1\]"),
        ({"alpha_cap": "0.8"}, TypeError, "alpha_cap must be None or a real number"),
        ({"reduction": "max"}, ValueError, "reduction must be one of"),
    ],
)
def test_invalid_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        BoundaryDoULoss(**kwargs)


def test_invalid_inputs():
    x = torch.randn(2, 3, 8, 8)
    labels = torch.randint(0, 3, (2, 1, 8, 8))
    with pytest.raises(ValueError, match="to_onehot_y=True needs at least 2 channels"):
        BoundaryDoULoss(to_onehot_y=True)(torch.randn(2, 1, 8, 8), labels.clamp(max=1))
    with pytest.raises(ValueError, match="softmax=True needs at least 2 channels"):
        BoundaryDoULoss(softmax=True)(torch.randn(2, 1, 8, 8), torch.ones(2, 1, 8, 8))
    with pytest.raises(ValueError, match="leaves no class"):
        BoundaryDoULoss(include_background=False)(torch.rand(2, 1, 8, 8), torch.ones(2, 1, 8, 8))
    with pytest.raises(ValueError, match=r"different shape.*set to_onehot_y=True"):
        BoundaryDoULoss()(x, labels)
    with pytest.raises(ValueError, match="different shape"):
        BoundaryDoULoss()(x, torch.zeros(2, 3, 8, 7))
    with pytest.raises(ValueError, match="does not match input"):
        BoundaryDoULoss(to_onehot_y=True)(x, labels[:1])
    with pytest.raises(ValueError, match="label indices of shape"):
        BoundaryDoULoss(to_onehot_y=True)(x, torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match=r"integers in \[0, 3\)"):
        BoundaryDoULoss(to_onehot_y=True)(x, labels + 1)
    with pytest.raises(ValueError, match=r"integers in \[0, 3\)"):
        BoundaryDoULoss(to_onehot_y=True)(x, labels.float() + 0.5)
    with pytest.raises(ValueError, match="BNHW or BNHWD"):
        BoundaryDoULoss()(torch.rand(2, 3, 8), torch.rand(2, 3, 8))
    with pytest.raises(TypeError, match="must be torch.Tensor"):
        BoundaryDoULoss()(x.numpy(), labels)
