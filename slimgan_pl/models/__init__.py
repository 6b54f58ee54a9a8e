"""Slimmable generators and multi-width discriminators."""

from slimgan_pl.models.biggan import BigGANDeepGenerator, BigGANGenerator  # registers biggan32, biggan_deep32
from slimgan_pl.models.discriminators import DISCRIMINATORS, MultiWidthDiscriminator
from slimgan_pl.models.generators import (
    GENERATORS,
    SlimmableGenerator,
    SNDCGANGenerator,
    SNResGANGenerator,
    build_generator,
)

__all__ = [
    "BigGANDeepGenerator",
    "BigGANGenerator",
    "DISCRIMINATORS",
    "GENERATORS",
    "MultiWidthDiscriminator",
    "SNDCGANGenerator",
    "SNResGANGenerator",
    "SlimmableGenerator",
    "build_generator",
]
