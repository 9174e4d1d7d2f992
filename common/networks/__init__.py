from .cmunext import CMUNeXt
from .deeplabv3plus import ASPP, DeepLabV3Plus, load_encoder_weights
from .dmgsa import DMGSANet, DMGSATrainingModel, GMGSBlock, dmgsa_architecture
from .dual_task_vnet import DualTaskVNet
from .dybac import DyBAC, DynamicDepthwiseConv, KernelAttention, SpatialGate, set_dybac_temperature
from .dybac_discriminator import ASENetDiscriminator
from .dybac_nets import DyBACUNet, DyBACVNet, dybac_block
from .param_groups import weight_decay_param_groups
from .probability_ensemble import ProbabilityEnsemble
from .vnet import ConvBlockFactory, VNetBackbone, conv_stage, plain_conv_block

__all__ = ["CMUNeXt", "DMGSANet", "DMGSATrainingModel", "GMGSBlock", "dmgsa_architecture", "DualTaskVNet"]
__all__ += ["ASPP", "DeepLabV3Plus", "ProbabilityEnsemble", "load_encoder_weights"]

__all__ += ["ASENetDiscriminator", "DyBAC", "DyBACUNet", "DyBACVNet", "DynamicDepthwiseConv", "KernelAttention"]
__all__ += ["SpatialGate", "dybac_block", "set_dybac_temperature"]
__all__ += ["ConvBlockFactory", "VNetBackbone", "conv_stage", "plain_conv_block"]
__all__ += ["weight_decay_param_groups"]
