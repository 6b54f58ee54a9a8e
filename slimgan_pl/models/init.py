"""Weight initialisation schemes shared by generators and discriminators."""

from __future__ import annotations

from torch import nn

INIT_SCHEMES = ("xavier", "ortho", "normal")


def init_weight(module: nn.Module, scheme: str = "xavier", gain: float = 1.0) -> None:
    """Initialise one conv/linear/embedding weight in place; biases become zero.

    ``xavier``: Xavier-uniform with ``gain`` (SNGAN/SlimGAN recipes: 1, sqrt(2) for residual 3x3
    convs); ``ortho``: orthogonal (BigGAN); ``normal``: N(0, 0.02) (DCGAN, BigGAN CIFAR script).
    """
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"model init must be one of {INIT_SCHEMES}, got {scheme!r}")
    weight = module.weight
    if scheme == "xavier":
        nn.init.xavier_uniform_(weight, gain=gain)
    elif scheme == "ortho":
        nn.init.orthogonal_(weight)
    else:
        nn.init.normal_(weight, 0.0, 0.02)
    if getattr(module, "bias", None) is not None:
        nn.init.zeros_(module.bias)
