"""GAN losses and inplace distillation."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def hinge_d_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """mean(relu(1 - D(x))) + mean(relu(1 + D(G(z))))."""
    return F.relu(1.0 - real_scores).mean() + F.relu(1.0 + fake_scores).mean()


def hinge_g_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """-mean(D(G(z)))."""
    return -fake_scores.mean()


def distillation_loss(outputs: Sequence[torch.Tensor], stepwise: bool = True) -> torch.Tensor:
    """Inplace distillation over per-width outputs of the same (z, y), narrowest first.

    stepwise: mean over adjacent pairs of MSE(out[j], stopgrad(out[j+1])) (0.25 <- 0.5 <- 0.75 <- 1.0);
    otherwise mean over j of MSE(out[j], stopgrad(out[-1])). The widest width gets no gradient.
    With a single width there is nothing to distil and the loss is 0.
    """
    if len(outputs) < 2:
        return outputs[0].new_zeros(())
    if stepwise:
        pairs = [(outputs[j], outputs[j + 1]) for j in range(len(outputs) - 1)]
    else:
        pairs = [(outputs[j], outputs[-1]) for j in range(len(outputs) - 1)]
    return torch.stack([F.mse_loss(student, teacher.detach()) for student, teacher in pairs]).mean()
