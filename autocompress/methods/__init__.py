"""What can be done to a model: compression methods, plans and apply_plan.

Importing this package registers the built-in methods.
"""

from autocompress.methods import compact, decomposition, structured  # noqa: F401 (registers)
from autocompress.methods.apply import (
    LayerInfo,
    apply_plan,
    compressible_layers,
    find_output_layers,
)
from autocompress.methods.base import METHODS, ApplyContext, Method, MethodConfig, get_method
from autocompress.methods.compact import DepthwiseSeparableConfig, GroupedPointwiseConfig
from autocompress.methods.decomposition import CPConfig, TuckerConfig
from autocompress.methods.distillation import DistillConfig, distillation_loss
from autocompress.methods.layers import CompressedConv2d, CompressedLinear, LowRankLinear
from autocompress.methods.lowrank import SVDConfig
from autocompress.methods.plan import CompressionPlan
from autocompress.methods.pruning import PruneConfig
from autocompress.methods.quantization import QuantizeConfig, ShareConfig
from autocompress.methods.sparsity import SparsifyConfig
from autocompress.methods.structured import CirculantConfig, HashedConfig

__all__ = [
    "CPConfig",
    "CirculantConfig",
    "DepthwiseSeparableConfig",
    "GroupedPointwiseConfig",
    "HashedConfig",
    "TuckerConfig",
    "METHODS",
    "ApplyContext",
    "CompressedConv2d",
    "CompressedLinear",
    "CompressionPlan",
    "DistillConfig",
    "LayerInfo",
    "LowRankLinear",
    "Method",
    "MethodConfig",
    "PruneConfig",
    "QuantizeConfig",
    "SVDConfig",
    "ShareConfig",
    "SparsifyConfig",
    "apply_plan",
    "compressible_layers",
    "distillation_loss",
    "find_output_layers",
    "get_method",
]
