"""Weight and bias initialisation shared by generators and discriminators."""

from __future__ import annotations

from torch import nn

INIT_SCHEMES = ("xavier", "ortho", "normal")
BIAS_INITS = ("default", "zeros")


def init_weight(module: nn.Module, scheme: str = "xavier", gain: float = 1.0) -> None:
    """Initialise one conv/linear/embedding weight in place (the bias is left alone: see :func:`init_biases`).

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


def check_bias_init(bias_init: str, key: str) -> str:
    """``bias_init`` is one of :data:`BIAS_INITS`, else a one-line error naming ``key``."""
    if bias_init not in BIAS_INITS:
        raise ValueError(f"{key} must be one of {list(BIAS_INITS)}, got {bias_init!r}")
    return bias_init


def init_biases(module: nn.Module, bias_init: str, key: str) -> None:
    """The biases of every conv and linear layer under ``module``.

    ``default``: left as the layer's constructor drew them, PyTorch's U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    (fan_in of the FULL layer for slimmable ones); both references (SlimGAN's torch_mimicry code and
    BigGAN-PyTorch) initialise only the weights, so this is theirs. ``zeros``: all zero (this
    project's behaviour before it was made an option). ``key`` names the setting in errors.
    """
    if check_bias_init(bias_init, key) == "zeros":
        for m in module.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)) and m.bias is not None:
                nn.init.zeros_(m.bias)
