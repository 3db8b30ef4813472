"""autocompress: find the best compressed version of a neural network for your hardware.

The top-level package is light: it never imports Ray, MLflow or Lightning.
"""

from autocompress.errors import ArtifactError, AutocompressError, ConfigError, PlanError
from autocompress.export import deployable, load_compressed, save_compressed
from autocompress.hardware import Budget, Measurement, profile
from autocompress.methods import CompressionPlan, apply_plan
from autocompress.recipe import Recipe
from autocompress.space import SearchSpace, bind

__version__ = "0.1.0"

__all__ = [
    "ArtifactError",
    "AutocompressError",
    "Budget",
    "CompressionPlan",
    "ConfigError",
    "Measurement",
    "PlanError",
    "Recipe",
    "SearchSpace",
    "apply_plan",
    "bind",
    "deployable",
    "load_compressed",
    "profile",
    "save_compressed",
]
