"""Small models defined here (no torchvision): architectures and training."""
