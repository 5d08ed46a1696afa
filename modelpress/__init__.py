"""modelpress: model compression as a production pipeline.

Kept import-free on purpose: every KFP task is a fresh process and
`modelpress --help` must not pay for torch, mlflow, kfp or onnxruntime.
"""

__version__ = "0.1.0"
