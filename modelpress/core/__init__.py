"""Core abstractions shared by every technique, component and pipeline.

Nothing here imports kfp; heavy libraries are imported inside functions.
"""
