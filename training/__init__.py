"""Labels from opportunities, time split, LightGBM, baselines, evaluation and the MLflow registry."""
