"""What can be done to a model: compression methods, plans and apply_plan.

Importing this package registers the built-in methods.
"""

from autocompress.methods.apply import (
    LayerInfo,
    apply_plan,
    compressible_layers,
    find_output_layers,
)
from autocompress.methods.base import METHODS, ApplyContext, Method, MethodConfig, get_method
from autocompress.methods.distillation import DistillConfig, distillation_loss
from autocompress.methods.layers import LowRankLinear, QuantConv2d, QuantLinear
from autocompress.methods.lowrank import SVDConfig
from autocompress.methods.plan import CompressionPlan
from autocompress.methods.pruning import PruneConfig
from autocompress.methods.quantization import QuantizeConfig

__all__ = [
    "METHODS",
    "ApplyContext",
    "CompressionPlan",
    "DistillConfig",
    "LayerInfo",
    "LowRankLinear",
    "Method",
    "MethodConfig",
    "PruneConfig",
    "QuantConv2d",
    "QuantLinear",
    "QuantizeConfig",
    "SVDConfig",
    "apply_plan",
    "compressible_layers",
    "distillation_loss",
    "find_output_layers",
    "get_method",
]
