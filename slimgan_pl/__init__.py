"""slimgan-pl: slimmable GANs (SlimGAN) with PyTorch Lightning and Hydra."""

from slimgan_pl.module import SlimGAN

__all__ = ["SlimGAN"]
__version__ = "0.1.0"
