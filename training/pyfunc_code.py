"""The code MLflow logs as the registered model's pyfunc (models from code): loading a model
runs this file, which makes the wrapper, and the wrapper reads the model's files from its
artifacts. Nothing is unpickled."""

from mlflow.models import set_model

from training.model import InMarketPyfunc

set_model(InMarketPyfunc())
