"""MLflow "models from code" entry: the pyfunc model of an autocompress artifact.

MLflow copies this file into each logged model and runs it when the model is loaded
(see autocompress/tracking/pyfunc.py for the trade-off).
"""

from mlflow.models import set_model

from autocompress.tracking.pyfunc import AczModel

set_model(AczModel())
