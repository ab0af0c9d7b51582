"""Labels, time split, LightGBM, baselines, evaluation and the MLflow registry."""
