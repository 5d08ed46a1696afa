"""The MLflow registry layer (imported as `modelpress.registry`)."""
