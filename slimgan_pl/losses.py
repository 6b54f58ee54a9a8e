"""GAN losses, inplace distillation and BigGAN's orthogonal regularization of G."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn


def hinge_d_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """mean(relu(1 - D(x))) + mean(relu(1 + D(G(z))))."""
    return F.relu(1.0 - real_scores).mean() + F.relu(1.0 + fake_scores).mean()


def hinge_g_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """-mean(D(G(z)))."""
    return -fake_scores.mean()


def bce_d_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """The original GAN's D loss on logits: BCE(D(x), 1) + BCE(D(G(z)), 0)
    = mean(softplus(-D(x))) + mean(softplus(D(G(z)))); D of ``gan``, ``ns`` and ``saturating``."""
    return F.softplus(-real_scores).mean() + F.softplus(fake_scores).mean()


def bce_g_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """``gan`` as the official code (mimicry's ``minimax_loss_gen``) computes it: BCE(D(G(z)), 1)
    = mean(softplus(-D(G(z)))) = -mean(log sigmoid(D(G(z)))). Despite the name it is the
    non-saturating form (Goodfellow et al.'s -log D trick)."""
    return F.softplus(-fake_scores).mean()


NS_EPS = 1e-8  # the official ns loss adds it inside the log


def ns_g_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """``ns`` as the official code (mimicry's ``ns_loss_gen``): -mean(log(sigmoid(D(G(z))) + 1e-8)).
    Equals :func:`bce_g_loss` except where sigmoid(D(G(z))) nears 1e-8 (logits below about -18),
    where the epsilon bounds the loss and flattens its gradient."""
    return -torch.log(torch.sigmoid(fake_scores) + NS_EPS).mean()


def saturating_g_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """The minimax G loss of the original GAN paper: mean(log(1 - sigmoid(D(G(z)))))
    = -mean(softplus(D(G(z)))): saturates (vanishing gradient) when D rejects the fakes confidently.
    Not in the official SlimGAN code (its ``gan`` is :func:`bce_g_loss`)."""
    return -F.softplus(fake_scores).mean()


# optim.loss -> (D loss(real_scores, fake_scores), G loss(fake_scores)), applied to every width.
GAN_LOSSES: dict[
    str, tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]
] = {
    "hinge": (hinge_d_loss, hinge_g_loss),
    "gan": (bce_d_loss, bce_g_loss),
    "ns": (bce_d_loss, ns_g_loss),
    "saturating": (bce_d_loss, saturating_g_loss),
}


def gan_losses(
    name: str,
) -> tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]:
    """(D loss, G loss) of ``optim.loss``; a one-line ValueError naming the allowed values otherwise."""
    if name not in GAN_LOSSES:
        raise ValueError(f"optim.loss must be one of {list(GAN_LOSSES)}, got {name!r}")
    return GAN_LOSSES[name]


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


def orthogonal_penalty(generator: nn.Module, beta: float) -> torch.Tensor:
    """BigGAN's orthogonal regularization, the loss form: ``R = beta * sum_W ||W W^T * (1 - I)||_F^2``
    over ``generator``'s parameters with >= 2 dims (reshaped to (dim 0, -1)), excluding class-embedding
    tables (BigGAN's shared embedding; scBN's tables) and 1-D parameters; on the FULL weights (with
    spectral norm: the un-normalised ``original``), as the paper writes it. Its gradient is
    ``4 beta (W W^T * (1 - I)) W``; the reference code adds ``2 beta (W W^T * (1 - I)) W`` straight
    to the gradient (= the gradient of beta/2 R), so its update at beta equals ours at beta / 2."""
    device = next(generator.parameters(), torch.empty(0)).device
    embeddings = {id(m.weight) for m in generator.modules() if isinstance(m, nn.Embedding)}
    total = None
    # float32 even under mixed precision: the Gram matrices' off-diagonal entries are small
    # differences of large sums (autocast would run the matmul in bf16/fp16)
    with torch.autocast(device_type=device.type, enabled=False):
        for p in generator.parameters():
            if p.ndim < 2 or id(p) in embeddings:
                continue
            w = p.float().reshape(p.shape[0], -1)
            gram = w @ w.T
            off = gram - torch.diag_embed(torch.diagonal(gram))  # (W W^T) * (1 - I)
            term = off.square().sum()
            total = term if total is None else total + term
    if total is None:
        return torch.zeros((), device=device)
    return beta * total
