"""CMUNeXt: a lightweight fully convolutional 2D segmentation network with large kernels and skip fusion.

Tang et al., "CMUNeXt: An Efficient Medical Image Segmentation Network based on Large Kernel and Skip Fusion",
ISBI 2024, https://arxiv.org/abs/2308.01239. Official code: https://github.com/FengheTan9/CMUNeXt.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

__all__ = ["CMUNEXT_VARIANTS", "CMUNeXt", "CMUNeXtBlock", "CMUNeXtStage", "CMUNeXtUpStage", "SkipFusionBlock"]

#: The three published configurations (paper and official ``network/CMUNeXt.py``): channel width of each of the
#: five encoder stages, number of CMUNeXt blocks per stage and the depthwise kernel size per stage.
CMUNEXT_VARIANTS: dict[str, dict[str, tuple[int, ...]]] = {
    "cmunext": {"dims": (16, 32, 128, 160, 256), "depths": (1, 1, 1, 3, 1), "kernels": (3, 3, 7, 7, 7)},
    "cmunext_s": {"dims": (8, 16, 32, 64, 128), "depths": (1, 1, 1, 1, 1), "kernels": (3, 3, 7, 7, 9)},
    "cmunext_l": {"dims": (32, 64, 128, 256, 512), "depths": (1, 1, 1, 6, 3), "kernels": (3, 3, 7, 7, 7)},
}

#: Number of encoder stages; stages 2..5 are each preceded by a 2x2 max-pool.
NUM_STAGES = 5
#: Inverted-bottleneck expansion ratio of the pointwise MLPs (C -> 4C -> C), in the blocks and in skip fusion.
MLP_RATIO = 4
#: Groups of the 3x3 convolution that opens the skip-fusion block (one group per concatenated branch).
FUSION_GROUPS = 2
#: Spatial sizes must be divisible by this (four 2x2 max-pools).
SIZE_DIVISOR = 2 ** (NUM_STAGES - 1)


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 convolution (stride 1, "same" padding, with bias) -> BatchNorm -> ReLU; maps BCHW to B(out)HW."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def _conv_gelu_bn(in_channels: int, out_channels: int, **conv: int) -> list[nn.Module]:
    """Convolution (``conv``: kernel_size, padding, groups) -> GELU -> BatchNorm, as a list for ``nn.Sequential``.

    A list, not a module, so that the layers sit directly in their block's ``nn.Sequential`` and keep their indices
    (state-dict keys such as ``mlp.3.weight``, which trained checkpoints load by). GELU precedes the norm, as in the
    paper and the official code.
    """
    return [nn.Conv2d(in_channels, out_channels, **conv), nn.GELU(), nn.BatchNorm2d(out_channels)]


def _pointwise_mlp(in_channels: int, hidden: int, out_channels: int) -> list[nn.Module]:
    """The inverted-bottleneck MLP of the blocks and of skip fusion: 1x1 conv-GELU-BN to ``hidden``, then to ``out``."""
    return _conv_gelu_bn(in_channels, hidden, kernel_size=1) + _conv_gelu_bn(hidden, out_channels, kernel_size=1)


class CMUNeXtBlock(nn.Module):
    """One CMUNeXt block: a residual large-kernel depthwise convolution followed by an inverted-bottleneck MLP.

    ``y = MLP(x + BN(GELU(DWConv_kxk(x))))`` with ``MLP = BN(GELU(Conv1x1_{4C->C}(BN(GELU(Conv1x1_{C->4C}(.))))))``.
    The residual wraps the depthwise branch only, as in the paper; the MLP has no shortcut.

    Args:
        channels: number of channels C (input and output).
        kernel_size: odd size k of the depthwise convolution kernel. Defaults to 3.

    Raises:
        ValueError: if ``channels`` is not a positive int or ``kernel_size`` not a positive odd int.
    """

    def __init__(self, channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        _check_positive_int("channels", channels)
        _check_odd_kernel("kernel_size", kernel_size)
        hidden = channels * MLP_RATIO
        self.depthwise = nn.Sequential(
            *_conv_gelu_bn(channels, channels, kernel_size=kernel_size, padding=kernel_size // 2, groups=channels)
        )
        self.mlp = nn.Sequential(*_pointwise_mlp(channels, hidden, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: feature map of shape (B, C, H, W).

        Returns:
            feature map of shape (B, C, H, W).
        """
        return self.mlp(x + self.depthwise(x))


class CMUNeXtStage(nn.Module):
    """An encoder stage: ``depth`` CMUNeXt blocks at the input width, then 3x3 conv-BN-ReLU to the output width.

    Args:
        in_channels: width C_in the blocks operate at.
        out_channels: width C_out of the stage output.
        depth: number of CMUNeXt blocks. Defaults to 1.
        kernel_size: odd depthwise kernel size of the blocks. Defaults to 3.

    Raises:
        ValueError: if an argument is not a positive int, or ``kernel_size`` is even.
    """

    def __init__(self, in_channels: int, out_channels: int, depth: int = 1, kernel_size: int = 3) -> None:
        super().__init__()
        _check_positive_int("in_channels", in_channels)
        _check_positive_int("out_channels", out_channels)
        _check_positive_int("depth", depth)
        _check_odd_kernel("kernel_size", kernel_size)
        self.blocks = nn.Sequential(*[CMUNeXtBlock(in_channels, kernel_size) for _ in range(depth)])
        self.transition = _conv_bn_relu(in_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: feature map of shape (B, C_in, H, W).

        Returns:
            feature map of shape (B, C_out, H, W).
        """
        return self.transition(self.blocks(x))


class SkipFusionBlock(nn.Module):
    """Skip-fusion block: fuses the concatenation ``[skip, upsampled]`` (2C channels) into C channels.

    3x3 group convolution (groups = 2) on 2C -> GELU -> BN -> 1x1 to 4C -> GELU -> BN -> 1x1 to C -> GELU -> BN.

    Args:
        channels: width C of each of the two concatenated branches and of the output.

    Raises:
        ValueError: if ``channels`` is not a positive int.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        _check_positive_int("channels", channels)
        fused = channels * FUSION_GROUPS
        hidden = channels * MLP_RATIO
        self.fuse = nn.Sequential(
            *_conv_gelu_bn(fused, fused, kernel_size=3, padding=1, groups=FUSION_GROUPS),
            *_pointwise_mlp(fused, hidden, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: concatenated feature map of shape (B, 2C, H, W).

        Returns:
            feature map of shape (B, C, H, W).
        """
        return self.fuse(x)


class CMUNeXtUpStage(nn.Module):
    """A decoder stage: bilinear x2 upsampling -> 3x3 conv-BN-ReLU, concatenation with the skip, skip fusion.

    Args:
        in_channels: width C_in of the deeper feature map.
        out_channels: width C of the skip feature map and of the output.

    Raises:
        ValueError: if an argument is not a positive int.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        _check_positive_int("in_channels", in_channels)
        _check_positive_int("out_channels", out_channels)
        self.up = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear"),
            _conv_bn_relu(in_channels, out_channels),
        )
        self.fusion = SkipFusionBlock(out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: deeper feature map of shape (B, C_in, H/2, W/2).
            skip: encoder feature map of shape (B, C, H, W).

        Returns:
            feature map of shape (B, C, H, W).
        """
        # skip first, as in the paper and the official code (this fixes which group of the fusion conv sees which)
        return self.fusion(torch.cat((skip, self.up(x)), dim=1))


class CMUNeXt(nn.Module):
    """CMUNeXt, an efficient U-shaped 2D segmentation network based on large kernels and skip fusion.

    Tang et al., "CMUNeXt: An Efficient Medical Image Segmentation Network based on Large Kernel and Skip Fusion",
    ISBI 2024, https://arxiv.org/abs/2308.01239.

    The network is 2D only, as in the paper. Encoder: a 3x3 conv-BN-ReLU stem to ``dims[0]``, then five stages
    (:py:class:`CMUNeXtStage`); stage 1 runs at full resolution and a 2x2 max-pool precedes stages 2-5. The stage of
    index i (0-4) runs ``depths[i]`` CMUNeXt blocks (:py:class:`CMUNeXtBlock`, depthwise kernel ``kernels[i]``) at
    width ``dims[i-1]`` (``dims[0]`` for i = 0) and ends with a 3x3 conv-BN-ReLU to width ``dims[i]``, so the
    bottleneck is ``dims[4]`` wide at 1/16 of the input size. Decoder: four stages
    (:py:class:`CMUNeXtUpStage`) of bilinear x2 upsampling, 3x3 conv-BN-ReLU, concatenation ``[skip, up]`` and a
    :py:class:`SkipFusionBlock`; a final 1x1 convolution gives ``out_channels`` logits (no activation).

    The published configurations are selected with ``variant``; ``dims``, ``depths`` and ``kernels`` left as None
    take the variant's values, and any of them given overrides it:

    ===========  =====================  ===============  ===============  ==========================
    variant      dims                   depths           kernels          paper (256x256)
    ===========  =====================  ===============  ===============  ==========================
    cmunext      16, 32, 128, 160, 256  1, 1, 1, 3, 1    3, 3, 7, 7, 7    3.14 M params, 7.41 GFLOPs
    cmunext_s    8, 16, 32, 64, 128     1, 1, 1, 1, 1    3, 3, 7, 7, 9
    cmunext_l    32, 64, 128, 256, 512  1, 1, 1, 6, 3    3, 3, 7, 7, 7
    ===========  =====================  ===============  ===============  ==========================

    The exact default count is 3,149,185 parameters. The paper's "GFLOPs" are multiply-accumulates (MACs) as counted
    by thop (convolutions plus BatchNorm and upsampling); see ``benchmarks/complexity.py``.

    Args:
        in_channels: number of input channels. Defaults to 3.
        out_channels: number of output channels (classes). Defaults to 1.
        dims: five stage widths; None takes them from ``variant``.
        depths: five numbers of CMUNeXt blocks per stage; None takes them from ``variant``.
        kernels: five odd depthwise kernel sizes; None takes them from ``variant``.
        variant: one of ``"cmunext"``, ``"cmunext_s"``, ``"cmunext_l"`` (case-insensitive; ``"CMUNeXt-S"`` is also
            accepted). Defaults to ``"cmunext"``.

    Raises:
        ValueError: if ``variant`` is unknown, a channel count is not a positive int, ``dims``, ``depths`` or
            ``kernels`` does not have five positive ints, or a kernel size is even.

    Examples::

        # the default CMUNeXt, 3 input channels, 2 classes
        net = CMUNeXt(in_channels=3, out_channels=2)
        # CMUNeXt-L, from a bundle config:
        # {"_target_": "common.networks.CMUNeXt", "in_channels": 1, "out_channels": 2, "variant": "cmunext_l"}
        net = CMUNeXt(in_channels=1, out_channels=2, variant="cmunext_l")
        y = net(torch.rand(4, 1, 256, 256))  # (4, 2, 256, 256)
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 1,
        dims: Sequence[int] | None = None,
        depths: Sequence[int] | None = None,
        kernels: Sequence[int] | None = None,
        variant: str = "cmunext",
    ) -> None:
        super().__init__()
        _check_positive_int("in_channels", in_channels)
        _check_positive_int("out_channels", out_channels)
        config = CMUNEXT_VARIANTS[_normalize_variant(variant)]
        dims = _check_stage_values("dims", config["dims"] if dims is None else dims)
        depths = _check_stage_values("depths", config["depths"] if depths is None else depths)
        kernels = _check_stage_values("kernels", config["kernels"] if kernels is None else kernels)
        for i, k in enumerate(kernels):
            _check_odd_kernel(f"kernels[{i}]", k)

        self.in_channels = in_channels
        self.out_channels = out_channels
        self.dims = dims
        self.depths = depths
        self.kernels = kernels
        self.size_divisor = SIZE_DIVISOR

        self.stem = _conv_bn_relu(in_channels, dims[0])
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        stage_in = (dims[0],) + dims[:-1]
        self.encoders = nn.ModuleList(
            [CMUNeXtStage(stage_in[i], dims[i], depths[i], kernels[i]) for i in range(NUM_STAGES)]
        )
        # deepest first: decoders[j] upsamples dims[4 - j] to dims[3 - j]
        self.decoders = nn.ModuleList([CMUNeXtUpStage(dims[i], dims[i - 1]) for i in range(NUM_STAGES - 1, 0, -1)])
        self.head = nn.Conv2d(dims[0], out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: input image batch of shape (B, in_channels, H, W), H and W divisible by 16.

        Returns:
            logits of shape (B, out_channels, H, W).

        Raises:
            ValueError: if ``x`` is not 4D (BCHW), has the wrong number of channels, or H or W is not divisible by 16.
        """
        if x.dim() != 4:
            raise ValueError(f"CMUNeXt is 2D: expected input of shape (B, C, H, W), got {x.dim()} dimensions.")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"expected {self.in_channels} input channels, got {x.shape[1]}.")
        if x.shape[2] % self.size_divisor != 0 or x.shape[3] % self.size_divisor != 0:
            raise ValueError(
                f"CMUNeXt needs H and W divisible by {self.size_divisor} (four 2x2 max-pools), "
                f"got H={x.shape[2]}, W={x.shape[3]}; pad or crop the input, e.g. with monai.transforms.DivisiblePad."
            )
        skips: list[torch.Tensor] = []
        x = self.stem(x)
        for i, encoder in enumerate(self.encoders):
            if i > 0:
                x = self.pool(x)
            x = encoder(x)
            skips.append(x)
        for j, decoder in enumerate(self.decoders):
            x = decoder(x, skips[-(j + 2)])
        return self.head(x)


def _normalize_variant(variant: str) -> str:
    if not isinstance(variant, str):
        raise ValueError(f"variant must be a str, got {type(variant).__name__}.")
    key = variant.strip().lower().replace("-", "_")
    if key not in CMUNEXT_VARIANTS:
        raise ValueError(f"unknown CMUNeXt variant {variant!r}; choose one of {sorted(CMUNEXT_VARIANTS)}.")
    return key


def _check_positive_int(name: str, value: object) -> None:
    # bool is an int subclass but never a meaningful channel count or kernel size
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")


def _check_odd_kernel(name: str, value: int) -> None:
    _check_positive_int(name, value)
    if value % 2 == 0:
        raise ValueError(f"{name} must be odd so that 'same' padding keeps the spatial size, got {value}.")


def _check_stage_values(name: str, values: Sequence[int]) -> tuple[int, ...]:
    if isinstance(values, str | bytes) or not isinstance(values, Sequence) or len(values) != NUM_STAGES:
        raise ValueError(f"{name} must be a sequence of {NUM_STAGES} positive ints, got {values!r}.")
    for i, v in enumerate(values):
        _check_positive_int(f"{name}[{i}]", v)
    return tuple(int(v) for v in values)
