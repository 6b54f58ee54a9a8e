"""Slimmable building blocks."""

from slimgan_pl.nn.attention import SlimmableSelfAttention
from slimgan_pl.nn.conditional import (
    COND_NORMS,
    ConditionalBatchNorm2d,
    SliceableConditionalBatchNorm2d,
    SlimmableProjectedBatchNorm2d,
    SwitchableConditionalBatchNorm2d,
    conditional_norm,
)
from slimgan_pl.nn.cross_replica import CrossReplicaBatchNorm2d, convert_cross_replica_batchnorm, local_batch_statistics
from slimgan_pl.nn.slimmable import (
    SlimmableConv2d,
    SlimmableConvTranspose2d,
    SlimmableLinear,
    SwitchableBatchNorm2d,
    check_widths,
    slim_channels,
    width_index,
)

__all__ = [
    "COND_NORMS",
    "ConditionalBatchNorm2d",
    "CrossReplicaBatchNorm2d",
    "SliceableConditionalBatchNorm2d",
    "SlimmableConv2d",
    "SlimmableConvTranspose2d",
    "SlimmableLinear",
    "SlimmableProjectedBatchNorm2d",
    "SlimmableSelfAttention",
    "SwitchableBatchNorm2d",
    "SwitchableConditionalBatchNorm2d",
    "check_widths",
    "conditional_norm",
    "convert_cross_replica_batchnorm",
    "local_batch_statistics",
    "slim_channels",
    "width_index",
]
