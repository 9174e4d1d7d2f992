"""CMUNeXt's ``dice_bce.json``: the paper's loss (0.5 BCE + Dice), the comparator of Boundary DoU in the benchmark.

The official code (``FengheTan9/CMUNeXt``, ``BCEDiceLoss``) takes one logit per pixel: ``0.5 * BCE(sigmoid(z), y)``
plus ``1 - mean_over_images((2 sum(p y) + s) / (sum p + sum y + s))`` with ``s = 1e-5`` and ``p = sigmoid(z)``.
The bundle's network has two softmax channels; with ``z = z_1 - z_0`` its foreground probability is ``sigmoid(z)``
and its two-class cross-entropy is that BCE, so the overlay's MONAI ``DiceCELoss`` must equal the official formula.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from monai.bundle import ConfigParser

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "bundles" / "cmunext" / "configs"


def official_bce_dice(logit: torch.Tensor, target: torch.Tensor, smooth: float = 1e-5) -> torch.Tensor:
    """The official formula on one logit per pixel, written out: (B, 1, H, W) logits and 0/1 targets."""
    bce = F.binary_cross_entropy_with_logits(logit, target)
    p = torch.sigmoid(logit).flatten(1)
    y = target.flatten(1)
    dice = (2 * (p * y).sum(1) + smooth) / (p.sum(1) + y.sum(1) + smooth)
    return 0.5 * bce + 1 - dice.mean()


def overlay_loss() -> torch.nn.Module:
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / "train.json"), str(CONFIGS / "dice_bce.json")])
    return parser.get_parsed_content("loss")


def test_dice_bce_overlay_is_the_papers_loss() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 2, 6, 5, generator=generator) * 2
    target = torch.zeros(2, 1, 6, 5)
    target[0, 0, 1:4, 1:3] = 1  # 6 foreground pixels in the first image, 1 in the second: per-image Dice matters
    target[1, 0, 5, 4] = 1
    expected = official_bce_dice(logits[:, 1:] - logits[:, :1], target)
    assert torch.allclose(overlay_loss()(logits, target), expected, atol=1e-6)


def test_dice_bce_overlay_differs_from_the_plausible_wrong_versions() -> None:
    """A Dice over the whole batch, with the background channel, or with BCE weighted 1 gives another value."""
    from monai.losses import DiceCELoss

    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 2, 6, 5, generator=generator) * 2
    target = torch.zeros(2, 1, 6, 5)
    target[0, 0, :3] = 1
    target[1, 0, 5, 4] = 1
    value = overlay_loss()(logits, target)
    common = {"to_onehot_y": True, "softmax": True, "smooth_nr": 1e-5, "smooth_dr": 1e-5}
    for wrong in (
        DiceCELoss(include_background=False, batch=True, lambda_ce=0.5, **common),
        DiceCELoss(include_background=True, lambda_ce=0.5, **common),
        DiceCELoss(include_background=False, lambda_ce=1.0, **common),
    ):
        assert abs(float(wrong(logits, target) - value)) > 1e-3


def test_dice_bce_overlay_writes_apart_from_the_default_run() -> None:
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / "train.json"), str(CONFIGS / "dice_bce.json")])
    assert parser.get("ckpt_dir").endswith("'/models/dice_bce'")
    assert parser.get("output_dir").endswith("'/eval/dice_bce'")
