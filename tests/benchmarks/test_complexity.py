"""Tests of benchmarks/complexity.py: FLOPs of a multi-input forward, and ASE-Net's table of parameters and FLOPs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import complexity


class _Bilinear(nn.Module):
    """``(a @ w) @ b.T``: two inputs, two matrix products of known cost."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(3, 4))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a @ self.w) @ b.T


def test_flop_counter_mode_passes_every_input_and_counts_two_per_multiply_accumulate() -> None:
    flops, per_op = complexity.flop_counter_mode(_Bilinear(), torch.ones(2, 3), torch.ones(5, 4))
    assert flops == 2 * (2 * 3 * 4) + 2 * (2 * 4 * 5)  # (2x3)@(3x4), then (2x4)@(4x5)
    assert sum(per_op.values()) == flops


def test_asenet_report_columns() -> None:
    rows = [{"name": "3D V-Net + DyBAC", "input": (112, 112, 80), "params": 4_068_311, "flops": 33_494_000_000}]
    lines = complexity.asenet_report(rows).splitlines()
    assert lines[0].split() == ["network", "input", "params", "(M)", "GFLOPs"]
    assert lines[1].split() == ["3D", "V-Net", "+", "DyBAC", "112x112x80", "4.068", "33.49"]


@pytest.mark.integration
def test_asenet_rows_dybac_against_the_plain_backbones(capsys) -> None:
    assert complexity.main(["--model", "asenet", "--threads", "1"]) == 0
    table = capsys.readouterr().out.splitlines()
    rows = {line[:22].strip(): line[22:].split() for line in table[1:]}
    assert list(rows) == [
        "3D V-Net + DyBAC",
        "3D V-Net plain",
        "2D U-Net + DyBAC",
        "2D U-Net plain",
        "discriminator 3D",
        "discriminator 2D",
    ]
    # parameters of the official VNet_dy(1, 2, "batchnorm") and Unet_dy_v2(3, 2) less its unused batch norm
    assert rows["3D V-Net + DyBAC"][:2] == ["112x112x80", "4.068"] and rows["2D U-Net + DyBAC"][1] == "5.426"
    for dims in ("3D V-Net", "2D U-Net"):  # DyBAC is the lighter one in both counts
        dybac, plain = rows[f"{dims} + DyBAC"], rows[f"{dims} plain"]
        assert float(dybac[1]) < float(plain[1]) and float(dybac[2]) < float(plain[2])
