"""DeepLabv3+ with a dilated ResNet encoder, built from MONAI's ``ResNet`` and ``Convolution`` blocks.

The segmentation network of CPS (Chen et al., CVPR 2021, TorchSemiSeg) and of DFCPS (Chen et al., ISBI 2024), after
DeepLabv3+ (Chen et al., ECCV 2018):

- **encoder**: MONAI's ``ResNet`` with bottleneck blocks (``layers=(3, 4, 6, 3)``: ResNet-50), its stem either
  ResNet-50-C's (``stem="deep"``, the default: three 3x3 convolutions ``in -> w -> w -> 2w`` with BN-ReLU between
  them, ``w = stem_width = 64``, then BN-ReLU and the max pool: TorchSemiSeg's ``resnet50(deep_stem=True,
  stem_width=64)`` that CPS and DFCPS build, with the parameter names of its ``resnet50_v1c.pth``: ``conv1.0``,
  ``conv1.1``, ``conv1.3``, ``conv1.4``, ``conv1.6``, ``bn1``, ``layer1``...) or torchvision's single 7x7
  convolution (``stem="torchvision"``, whose ImageNet ``resnet50`` state dict loads as it is), its last stage(s)
  turned from strided into dilated convolutions: output stride 16 (TorchSemiSeg's setting: ``layer4`` without stride,
  its three blocks dilated by ``2 * (1, 2, 4)``, DeepLabv3's multi-grid) or 8 (``layer3`` dilated by 2 as well,
  ``layer4`` by ``4 * (1, 2, 4)``);
- **ASPP** on the last stage: a 1x1 branch, three 3x3 branches dilated by ``aspp_rates`` (6, 12, 18), an image-pooling
  branch, each convolution-BN-LeakyReLU, concatenated and projected by a 1x1 convolution-BN-LeakyReLU (TorchSemiSeg's
  ASPP, which sums the projected pooling branch instead of concatenating it: the same function and parameter count);
- **decoder**: the ASPP output upsampled (bilinear, ``align_corners=True``) to the stride-4 features of ``layer1``,
  concatenated with those reduced to 48 channels (1x1 convolution-BN-ReLU), two 3x3 convolution-BN-ReLU layers of 256
  channels, a 1x1 classifier, and a bilinear upsampling to the input size.

Differences from TorchSemiSeg's network: batch normalisation is plain ``BatchNorm`` (multi-GPU configs convert it to
``SyncBatchNorm``). No pretrained weights are downloaded: ``pretrained_encoder_path`` loads a state dict from disk into
the encoder (the deep stem takes ``resnet50_v1c.pth``, the 7x7 stem torchvision's ``resnet50``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Conv, Norm, Pool
from monai.networks.nets import ResNet
from torch import nn

from common.networks.utils import check_spatial_dims

__all__ = ["ASPP", "DeepLabV3Plus", "load_encoder_weights"]

_BLOCK_INPLANES = (64, 128, 256, 512)
_EXPANSION = 4  # bottleneck blocks: the output has 4x the block's planes
_CHECKPOINT_KEYS = ("state_dict", "model", "network", "net")
_PREFIXES = ("module.", "encoder.", "backbone.")
_LEAKY_RELU = ("leakyrelu", {"negative_slope": 0.01})
_RELU = ("relu", {"inplace": True})
_STEMS = ("deep", "torchvision")


def _init_conv_bn(module: nn.Module) -> None:
    """TorchSemiSeg's initialisation of the head: Kaiming-normal (fan in) convolutions, BN weight 1 and bias 0."""
    for child in module.modules():
        if isinstance(child, nn.Conv1d | nn.Conv2d | nn.Conv3d):
            nn.init.kaiming_normal_(child.weight, mode="fan_in", nonlinearity="relu")
            if child.bias is not None:
                nn.init.zeros_(child.bias)
        elif isinstance(child, nn.modules.batchnorm._BatchNorm):
            nn.init.ones_(child.weight)
            nn.init.zeros_(child.bias)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling of DeepLabv3: parallel dilated convolutions and image pooling, then a projection.

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels of the input features (2048 for ResNet-50).
        out_channels: channels of every branch and of the output (256).
        rates: dilations of the 3x3 branches (6, 12, 18 at output stride 16).
        norm: MONAI normalisation of every convolution.
        act: MONAI activation of every convolution (TorchSemiSeg: LeakyReLU, slope 0.01).

    Input ``(B, in_channels, *spatial)``; output ``(B, out_channels, *spatial)``. In training mode the pooling branch's
    batch normalisation sees one value per image and channel, so a batch needs at least two images.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int = 256,
        rates: Sequence[int] = (6, 12, 18),
        norm: str | tuple = "batch",
        act: str | tuple = _LEAKY_RELU,
    ) -> None:
        super().__init__()
        if not rates or any(int(rate) < 1 for rate in rates):
            raise ValueError(f"ASPP rates must be positive integers, got {rates}")

        def conv(channels_in: int, kernel_size: int, dilation: int = 1) -> Convolution:
            return Convolution(
                spatial_dims,
                channels_in,
                out_channels,
                kernel_size=kernel_size,
                dilation=dilation,
                padding=dilation * (kernel_size // 2),
                norm=norm,
                act=act,
                bias=False,
            )

        self.branches = nn.ModuleList([conv(in_channels, 1)] + [conv(in_channels, 3, int(rate)) for rate in rates])
        self.pooling = nn.Sequential(Pool[Pool.ADAPTIVEAVG, spatial_dims](1), conv(in_channels, 1))
        self.project = conv(out_channels * (len(rates) + 2), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, *spatial)`` -> ``(B, out_channels, *spatial)``."""
        features = [branch(x) for branch in self.branches]
        pooled = self.pooling(x)
        features.append(F.interpolate(pooled, size=x.shape[2:], mode="nearest"))
        return self.project(torch.cat(features, dim=1))


def _unwrap_state_dict(state: Any) -> dict[str, torch.Tensor]:
    if isinstance(state, Mapping):
        for key in _CHECKPOINT_KEYS:
            if isinstance(state.get(key), Mapping):
                return _unwrap_state_dict(state[key])
        return dict(state)
    raise ValueError(f"expected a state dict (a mapping of names to tensors), got {type(state).__name__}")


def _strip_prefixes(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix) :], True
    return key


def load_encoder_weights(encoder: nn.Module, path: str | Path) -> None:
    """Load a ResNet state dict from ``path`` into ``encoder``, strictly, with an error that lists what does not fit.

    Accepted: a plain state dict, or one under ``"state_dict"``, ``"model"``, ``"network"`` or ``"net"``; key prefixes
    ``module.``, ``encoder.`` and ``backbone.`` are removed and a classifier (``fc.*``) is ignored, so TorchSemiSeg's
    ``resnet50_v1c.pth`` (into the deep stem; its ``load_model`` also reads ``"model"`` and ignores the classifier)
    and torchvision's ``resnet50`` ImageNet file (into the 7x7 stem) load as they are.

    Args:
        encoder: the MONAI ``ResNet`` (without ``fc``) of :class:`DeepLabV3Plus`.
        path: a file written by ``torch.save``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a state dict, or its keys or shapes do not match the encoder (the message lists
            the missing, unexpected and mismatched keys).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"pretrained encoder weights {path} do not exist")
    state = _unwrap_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    state = {_strip_prefixes(k): v for k, v in state.items() if not _strip_prefixes(k).startswith("fc.")}
    expected = encoder.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(
        f"{k}: file {tuple(state[k].shape)}, encoder {tuple(expected[k].shape)}"
        for k in set(state) & set(expected)
        if tuple(state[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or mismatched:
        parts = [
            f"{len(items)} {what} (first: {items[:5]})"
            for what, items in (
                ("missing keys", missing),
                ("unexpected keys", unexpected),
                ("shape mismatches", mismatched),
            )
            if items
        ]
        raise ValueError(
            f"pretrained encoder weights {path} do not fit the ResNet encoder: {'; '.join(parts)}. Expected a "
            "ResNet state dict of the encoder's stem layout (deep stem: conv1.0/.1/.3/.4/.6 as TorchSemiSeg's "
            "resnet50_v1c.pth; 7x7 stem: torchvision's conv1), bn1, layer1..layer4, of the same depth, width and input "
            "channels"
        )
    encoder.load_state_dict(state, strict=True)


def _use_deep_stem(encoder: ResNet, spatial_dims: int, in_channels: int, width: int) -> None:
    """Replace the 7x7 stem of a bottleneck ``ResNet`` by ResNet-50-C's three 3x3 convolutions (output ``2 * width``
    channels) and widen the input of ``layer1``'s first block to match.

    The module indices (0, 1, 3, 4, 6: convolution, BN, ReLU, convolution, BN, ReLU, convolution) are those of
    TorchSemiSeg's ``nn.Sequential`` stem, hence the keys of its ``resnet50_v1c.pth``; the initialisation is MONAI
    ``ResNet``'s (Kaiming-normal fan-out convolutions, BN weight 1 and bias 0).
    """
    conv = Conv[Conv.CONV, spatial_dims]
    norm = Norm[Norm.BATCH, spatial_dims]
    out_channels = 2 * width
    encoder.conv1 = nn.Sequential(
        conv(in_channels, width, kernel_size=3, stride=2, padding=1, bias=False),
        norm(width),
        nn.ReLU(inplace=True),
        conv(width, width, kernel_size=3, stride=1, padding=1, bias=False),
        norm(width),
        nn.ReLU(inplace=True),
        conv(width, out_channels, kernel_size=3, stride=1, padding=1, bias=False),
    )
    encoder.bn1 = norm(out_channels)
    first = encoder.layer1[0]
    first.conv1 = conv(out_channels, first.conv1.out_channels, kernel_size=1, bias=False)
    first.downsample[0] = conv(out_channels, first.downsample[0].out_channels, kernel_size=1, bias=False)
    for module in (encoder.conv1, encoder.bn1, first.conv1, first.downsample[0]):
        for child in module.modules():
            if isinstance(child, nn.Conv1d | nn.Conv2d | nn.Conv3d):
                nn.init.kaiming_normal_(child.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(child, nn.modules.batchnorm._BatchNorm):
                nn.init.ones_(child.weight)
                nn.init.zeros_(child.bias)


def _dilate(layer: nn.Sequential, dilations: Sequence[int], spatial_dims: int) -> None:
    """Remove the stride of a ResNet stage and dilate its 3x3 convolutions (block ``i`` by ``dilations[i]``)."""
    ones = (1,) * spatial_dims
    for index, block in enumerate(layer):
        dilation = int(dilations[index % len(dilations)])
        block.conv2.stride = ones
        block.conv2.dilation = (dilation,) * spatial_dims
        block.conv2.padding = (dilation,) * spatial_dims
        if block.downsample is not None:
            block.downsample[0].stride = ones
        block.stride = 1


class DeepLabV3Plus(nn.Module):
    """DeepLabv3+ with a dilated bottleneck-ResNet encoder (ResNet-50-C by default), as in CPS / DFCPS.

    Args:
        spatial_dims: 2 (images) or 3 (volumes; upsampling is then trilinear).
        in_channels: image channels (3 for RGB).
        out_channels: classes, background included (one channel for a sigmoid head).
        layers: bottleneck blocks per ResNet stage: ``(3, 4, 6, 3)`` is ResNet-50, ``(3, 4, 23, 3)`` ResNet-101.
        widen_factor: multiplies the ResNet widths (64, 128, 256, 512 planes, and the deep stem's width; 1.0 is the
            paper's network).
        stem: ``"deep"`` (ResNet-50-C: three 3x3 convolutions, TorchSemiSeg / DFCPS, ``resnet50_v1c.pth``) or
            ``"torchvision"`` (one 7x7 convolution, torchvision's ``resnet50`` layout).
        stem_width: the deep stem's first two widths (its output has twice as many channels); 64 as TorchSemiSeg's
            network (mmseg's and GluonCV's ResNet-50-C use 32).
        output_stride: 16 (TorchSemiSeg, the default) or 8: the encoder's output resolution relative to the input.
        multi_grid: relative dilations of the last stage's blocks (DeepLabv3's multi-grid; TorchSemiSeg: 1, 2, 4).
        aspp_rates: dilations of ASPP's 3x3 branches (6, 12, 18; usually doubled at output stride 8).
        aspp_channels: channels of ASPP's branches and output (256).
        low_level_channels: channels the ``layer1`` skip is reduced to (48).
        decoder_channels: channels of the two 3x3 decoder convolutions (256).
        norm: MONAI normalisation of the ASPP and decoder convolutions (the encoder uses batch normalisation).
        pretrained_encoder_path: a ResNet state dict to load into the encoder (see :func:`load_encoder_weights`);
            None starts from scratch.

    Raises:
        ValueError: unsupported ``spatial_dims``, ``output_stride`` or ``stem``, a bad ``layers``/``multi_grid``, or
            weights that do not fit.

    Input ``(B, in_channels, *spatial)``, every spatial size a multiple of ``output_stride`` for an exact alignment
    (other sizes work; features are resized to the skip's size); output: logits ``(B, out_channels, *spatial)``.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        out_channels: int = 2,
        layers: Sequence[int] = (3, 4, 6, 3),
        widen_factor: float = 1.0,
        stem: str = "deep",
        stem_width: int = 64,
        output_stride: int = 16,
        multi_grid: Sequence[int] = (1, 2, 4),
        aspp_rates: Sequence[int] = (6, 12, 18),
        aspp_channels: int = 256,
        low_level_channels: int = 48,
        decoder_channels: int = 256,
        norm: str | tuple = "batch",
        pretrained_encoder_path: str | Path | None = None,
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        if output_stride not in (8, 16):
            raise ValueError(f"output_stride must be 8 or 16, got {output_stride}")
        if len(layers) != 4 or any(int(n) < 1 for n in layers):
            raise ValueError(f"layers must give four positive block counts, got {layers}")
        if not multi_grid or any(int(g) < 1 for g in multi_grid):
            raise ValueError(f"multi_grid must hold positive integers, got {multi_grid}")
        if stem not in _STEMS:
            raise ValueError(f"stem must be one of {_STEMS}, got {stem!r}")
        if int(stem_width) < 1:
            raise ValueError(f"stem_width must be a positive integer, got {stem_width}")
        self.stem = stem
        self.spatial_dims = spatial_dims
        self.output_stride = output_stride
        self.upsample_mode = "bilinear" if spatial_dims == 2 else "trilinear"
        self.encoder = ResNet(
            block="bottleneck",
            layers=[int(n) for n in layers],
            block_inplanes=list(_BLOCK_INPLANES),
            spatial_dims=spatial_dims,
            n_input_channels=in_channels,
            conv1_t_size=7,
            conv1_t_stride=2,
            shortcut_type="B",
            widen_factor=widen_factor,
            feed_forward=False,
            bias_downsample=False,
        )
        if stem == "deep":
            _use_deep_stem(self.encoder, spatial_dims, in_channels, max(1, int(int(stem_width) * widen_factor)))
        last_dilation = 2 if output_stride == 16 else 4
        if output_stride == 8:
            _dilate(self.encoder.layer3, (2,), spatial_dims)
        _dilate(self.encoder.layer4, [last_dilation * int(g) for g in multi_grid], spatial_dims)
        planes = [int(p * widen_factor) for p in _BLOCK_INPLANES]
        self.aspp = ASPP(spatial_dims, planes[3] * _EXPANSION, aspp_channels, aspp_rates, norm=norm)
        self.reduce = Convolution(
            spatial_dims, planes[0] * _EXPANSION, low_level_channels, kernel_size=1, norm=norm, act=_RELU, bias=False
        )
        self.fuse = nn.Sequential(
            Convolution(
                spatial_dims,
                aspp_channels + low_level_channels,
                decoder_channels,
                kernel_size=3,
                norm=norm,
                act=_RELU,
                bias=False,
            ),
            Convolution(
                spatial_dims, decoder_channels, decoder_channels, kernel_size=3, norm=norm, act=_RELU, bias=False
            ),
        )
        self.classifier = Conv[Conv.CONV, spatial_dims](decoder_channels, out_channels, kernel_size=1, bias=True)
        for module in (self.aspp, self.reduce, self.fuse, self.classifier):
            _init_conv_bn(module)
        if pretrained_encoder_path is not None and str(pretrained_encoder_path) != "":
            load_encoder_weights(self.encoder, pretrained_encoder_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, *spatial)`` images -> ``(B, out_channels, *spatial)`` logits."""
        encoder = self.encoder
        features = encoder.act(encoder.bn1(encoder.conv1(x)))
        if not encoder.no_max_pool:
            features = encoder.maxpool(features)
        low_level = encoder.layer1(features)
        deep = encoder.layer4(encoder.layer3(encoder.layer2(low_level)))
        deep = F.interpolate(self.aspp(deep), size=low_level.shape[2:], mode=self.upsample_mode, align_corners=True)
        logits = self.classifier(self.fuse(torch.cat([deep, self.reduce(low_level)], dim=1)))
        return F.interpolate(logits, size=x.shape[2:], mode=self.upsample_mode, align_corners=True)
