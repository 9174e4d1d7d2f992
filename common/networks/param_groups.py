"""Optimizer parameter groups that spare normalisation parameters and biases from weight decay.

TorchSemiSeg's ``group_weight`` (``furnace/utils/init_func.py``, used by CPS and DFCPS for both networks' SGD) puts
the weights of convolutions and linear layers in a group with the optimizer's weight decay and every bias and every
batch/group-normalisation weight and bias in a group with ``weight_decay=0``: an L2 pull of a BN scale towards 0
shrinks the features it normalises rather than regularising a filter. :func:`weight_decay_param_groups` builds those two
groups for any module, to pass as ``params`` of a ``torch.optim`` optimizer.
"""

from __future__ import annotations

from typing import Any

from torch import nn

__all__ = ["NORM_TYPES", "weight_decay_param_groups"]

# _NormBase: BatchNorm1d/2d/3d, SyncBatchNorm, InstanceNorm1d/2d/3d (their affine parameters)
NORM_TYPES: tuple[type[nn.Module], ...] = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def weight_decay_param_groups(
    module: nn.Module, weight_decay: float, decay_norm_and_bias: bool = False
) -> list[dict[str, Any]]:
    """The trainable parameters of ``module`` in a decayed and a non-decayed group.

    Args:
        module: the network (a ``DistributedDataParallel`` wrapper works too); shared parameters are listed once.
        weight_decay: the decay of the first group (convolution and linear weights, and any other parameter that is
            neither a bias nor a normalisation layer's).
        decay_norm_and_bias: put every parameter in the decayed group (plain ``network.parameters()``), an option.

    Returns:
        ``[{"params": [...], "weight_decay": weight_decay}, {"params": [...], "weight_decay": 0.0}]``; the second
        group holds the weights and biases of :data:`NORM_TYPES` layers and every parameter named ``bias``. A group
        with no parameters is left out (at least one group remains).

    Raises:
        ValueError: a negative ``weight_decay``.
    """
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be non-negative, got {weight_decay}")
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    seen: set[int] = set()
    for child in module.modules():
        is_norm = isinstance(child, NORM_TYPES)
        for name, parameter in child.named_parameters(recurse=False):
            if not parameter.requires_grad or id(parameter) in seen:
                continue
            seen.add(id(parameter))
            spared = not decay_norm_and_bias and (is_norm or name == "bias")
            (no_decay if spared else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": float(weight_decay)}, {"params": no_decay, "weight_decay": 0.0}]
    kept = [group for group in groups if group["params"]]
    return kept or groups[:1]
