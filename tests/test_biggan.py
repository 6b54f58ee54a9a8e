"""BigGAN toolbox: every switch has a test that fails when the switch silently does nothing."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from slimgan_pl import SlimGAN
from slimgan_pl.checkpoint import load_slimgan
from slimgan_pl.deploy import export as ex
from slimgan_pl.deploy.common import select_generator
from slimgan_pl.models import MultiWidthDiscriminator, build_generator
from slimgan_pl.models.biggan import BigGANDeepDBlock, BigGANDeepGBlock, BigGANGenerator
from slimgan_pl.nn import (
    SlimmableConv2d,
    SlimmableLinear,
    SlimmableProjectedBatchNorm2d,
    SlimmableSelfAttention,
    SwitchableBatchNorm2d,
    slim_channels,
)
from slimgan_pl.train import ConfigError, build, train

from helpers.tiny import fit_on_noise

WIDTHS = [0.25, 0.5, 0.75, 1.0]


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (tests/conftest.py)


def tiny_g(arch: str = "biggan32", **kw) -> nn.Module:
    return build_generator(arch, WIDTHS, **{"ngf": 16, "img_channels": 1, **kw})


def tiny_model(arch: str = "biggan32", num_classes: int = 10, gen: dict | None = None, **kw) -> SlimGAN:
    g = dict(arch=arch, ngf=16, img_channels=1, num_classes=num_classes, **(gen or {}))
    d = dict(arch=arch, ndf=16, num_classes=num_classes)
    args = dict(generator=g, discriminator=d, widths=WIDTHS, n_share=2, alpha=10.0, n_dis=1)
    args.update(kw)
    return SlimGAN(**args)


def fit(model: SlimGAN, iterations: int, callbacks=(), batch: int = 8) -> pl.Trainer:
    return fit_on_noise(model, iterations, batch, num_classes=10, callbacks=callbacks)


# ----------------------------------------------------------------------------- 1. shared embedding, CBN
def test_projected_cbn_is_one_plus_gain_with_sliced_projection_outputs():
    torch.manual_seed(0)
    bn = SlimmableProjectedBatchNorm2d(16, 6, WIDTHS)
    assert all(not b.affine for b in bn.norm.bns)  # private BN per width, no affine of its own
    x, c = torch.randn(4, 8, 5, 5), torch.randn(4, 6)
    x_hat = F.batch_norm(x, None, None, training=True, eps=1e-5)
    with torch.no_grad():
        bn.gain.weight.zero_()
        bn.bias.weight.zero_()
    torch.testing.assert_close(bn(x, 0.5, c), x_hat)  # zero projections: identity affine ("1 +")
    torch.manual_seed(1)
    with torch.no_grad():
        bn.gain.weight.normal_()
        bn.bias.weight.normal_()
    gain, bias = c @ bn.gain.weight[:8].T, c @ bn.bias.weight[:8].T  # OUTPUT sliced to the width's 8 channels
    torch.testing.assert_close(bn(x, 0.5, c), x_hat * (1 + gain[:, :, None, None]) + bias[:, :, None, None])


@pytest.mark.parametrize("arch", ["biggan32", "biggan_deep32"])
def test_shared_embedding_conditions_every_block_and_last_bn_is_unconditional(arch):
    torch.manual_seed(0)
    g = tiny_g(arch, num_classes=10).eval()
    assert isinstance(g.shared, nn.Embedding) and g.shared.weight.shape == (10, 128)
    assert not parametrize.is_parametrized(g.shared)  # no spectral norm on the shared embedding
    cbns = [m for m in g.modules() if isinstance(m, SlimmableProjectedBatchNorm2d)]
    assert cbns and all(m.cond_dim >= 128 for m in cbns)
    assert isinstance(g.bn, SwitchableBatchNorm2d)  # last BN unconditional
    z = torch.randn(4, 128)
    for w in WIDTHS:
        a, b = g(z, w, torch.tensor([0, 1, 2, 3])), g(z, w, torch.tensor([5, 1, 2, 3]))
        assert (a[0] - b[0]).abs().max() > 1e-4  # y changes the image ...
        torch.testing.assert_close(a[1:], b[1:])  # ... of its own sample only (eval mode)
    unconditional = tiny_g(arch)
    assert unconditional.shared is None
    with pytest.raises(ValueError, match="shared_dim"):
        tiny_g(arch, num_classes=10, shared_dim=0)


# ----------------------------------------------------------------------------- 2. skip-z
def _block_conditions(g: BigGANGenerator, z: torch.Tensor, y: torch.Tensor | None) -> list[torch.Tensor]:
    seen = []
    hooks = [block.bn1.register_forward_hook(lambda m, args, out: seen.append(args[2].clone())) for block in g.blocks]
    try:
        g(z, 0.5, y)
    finally:
        for h in hooks:
            h.remove()
    return seen


@pytest.mark.parametrize("num_classes", [10, 0])
def test_skip_z_gives_each_block_its_own_chunk(num_classes):
    torch.manual_seed(0)
    g = tiny_g(num_classes=num_classes, skip_z=True).eval()
    assert g.z_chunk == 32 and g.fc.in_features == 32 and len(g.blocks) == 3
    y = torch.tensor([1, 7]) if num_classes else None
    z = torch.randn(2, 128)
    base = _block_conditions(g, z, y)
    e = g.shared(y) if num_classes else torch.zeros(2, 0)
    for i, c in enumerate(base):  # cat(embedding, chunk i+1); the chunk alone when unconditional
        torch.testing.assert_close(c, torch.cat([e, z[:, 32 * (i + 1) : 32 * (i + 2)]], 1), rtol=0, atol=0)
    for k in range(4):  # perturb chunk k: only block k-1's BN input changes (chunk 0 only feeds the linear)
        z2 = z.clone()
        z2[:, 32 * k : 32 * (k + 1)] += 1.0
        changed = [not torch.equal(a, b) for a, b in zip(base, _block_conditions(g, z2, y))]
        assert changed == [i == k - 1 for i in range(3)], (k, changed)
    out_a, out_b = g(z, 0.5, y), g(torch.cat([z[:, :32] + 1, z[:, 32:]], 1), 0.5, y)
    assert (out_a - out_b).abs().max() > 1e-4  # chunk 0 reaches the image through the first linear


def test_without_skip_z_or_classes_blocks_use_plain_bn_and_full_z():
    g = tiny_g(skip_z=False)
    assert g.fc.in_features == 128
    assert all(isinstance(b.bn1, SwitchableBatchNorm2d) for b in g.blocks)
    cond = tiny_g(skip_z=False, num_classes=10)
    assert all(b.bn1.cond_dim == 128 for b in cond.blocks)  # the embedding alone


@pytest.mark.parametrize("nz", [130, 127])
def test_skip_z_refuses_nz_not_divisible(nz):
    with pytest.raises(ValueError, match=rf"model\.generator\.nz={nz} must be a multiple of 4 .*skip_z"):
        tiny_g(nz=nz)
    assert tiny_g(nz=nz, skip_z=False).nz == nz  # fine without chunking


def test_deep_concatenates_full_z_with_the_embedding():
    torch.manual_seed(0)
    g = tiny_g("biggan_deep32", num_classes=10).eval()
    assert g.fc.in_features == 128 + 128
    seen = []
    blocks = [b for stage in g.stages for b in stage]
    assert len(blocks) == 6  # two per resolution
    for b in blocks:
        b.bn1.register_forward_hook(lambda m, args, out: seen.append(args[2]))
    z, y = torch.randn(3, 128), torch.tensor([0, 4, 9])
    g(z, 0.75, y)
    expected = torch.cat([g.shared(y), z], 1)
    assert len(seen) == 6 and all(torch.equal(c, expected) for c in seen)
    with pytest.raises(TypeError, match="skip_z"):
        tiny_g("biggan_deep32", skip_z=True)


def test_deep_blocks_drop_and_concatenate_channels():
    torch.manual_seed(0)
    gb = BigGANDeepGBlock(16, 8, WIDTHS, cond_dim=0, upsample=True).eval()
    with torch.no_grad():
        gb.conv4.weight.zero_()
        gb.conv4.bias.zero_()
    x = torch.randn(2, 8, 4, 4)  # width 0.5 of 16 channels
    torch.testing.assert_close(gb(x, 0.5), F.interpolate(x[:, :4], scale_factor=2))  # skip: first out_w channels
    db = BigGANDeepDBlock(4, 16, down=True, init="normal")
    db.conv4 = nn.Conv2d(db.conv4.in_channels, 16, 1)  # a zero residual branch (SN cannot normalise zeros)
    with torch.no_grad():
        db.conv4.weight.zero_()
        db.conv4.bias.zero_()
    x = torch.randn(2, 4, 8, 8)
    out = db(x)
    pooled = F.avg_pool2d(x, 2)
    torch.testing.assert_close(out[:, :4], pooled)
    torch.testing.assert_close(out[:, 4:], db.shortcut(pooled))


# ----------------------------------------------------------------------------- 3. self-attention
def test_self_attention_matches_the_sagan_formula_and_slices_with_width():
    torch.manual_seed(0)
    sa = SlimmableSelfAttention(32)
    x = torch.randn(2, 16, 8, 8)  # width 0.5
    torch.testing.assert_close(sa(x, 0.5), x)  # gamma starts at 0: identity
    with torch.no_grad():
        sa.gamma.fill_(0.7)
    c8, c2 = slim_channels(4, 0.5), slim_channels(16, 0.5)
    theta = torch.einsum("oc,nchw->nohw", sa.theta.weight[:c8, :16, 0, 0], x).flatten(2)
    phi = F.max_pool2d(torch.einsum("oc,nchw->nohw", sa.phi.weight[:c8, :16, 0, 0], x), 2).flatten(2)
    g = F.max_pool2d(torch.einsum("oc,nchw->nohw", sa.g.weight[:c2, :16, 0, 0], x), 2).flatten(2)
    beta = torch.softmax(torch.einsum("nci,ncj->nij", theta, phi), dim=-1)  # (N, 64 queries, 16 keys)
    o = torch.einsum("ncj,nij->nci", g, beta).view(2, c2, 8, 8)
    expected = x + 0.7 * torch.einsum("oc,nchw->nohw", sa.o.weight[:16, :c2, 0, 0], o)
    torch.testing.assert_close(sa(x, 0.5), expected, rtol=1e-5, atol=1e-5)


def test_attention_placement_and_resolution_errors():
    g = tiny_g(attn_resolution=16)
    seen = []
    g.attn.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[-1]))
    g(torch.randn(2, 128), 0.25)
    assert seen == [16] and g.attn.theta.in_channels == 16
    assert tiny_g(attn_resolution=None).attn is None
    assert not any(isinstance(m, SlimmableSelfAttention) for m in tiny_g(attn_resolution=None).modules())
    with pytest.raises(ValueError, match=r"model\.generator\.attn_resolution must be one of \[8, 16, 32\]"):
        tiny_g(attn_resolution=12)
    # BigGAN-32: in block 0 (output 16x16); BigGAN-deep-32: after stage 1, i.e. in its 2nd block (index 1)
    for arch, allowed, n_share in (("biggan32", r"\[8, 16\]", 1), ("biggan_deep32", r"\[8, 16\]", 2)):
        d = MultiWidthDiscriminator(arch, WIDTHS, n_share=n_share, ndf=16, img_channels=1, attn_resolution=16)
        shared_attn = [m for m in d.shared.modules() if isinstance(m, SlimmableSelfAttention)]
        assert len(shared_attn) == 1  # in the last shared block
        d = MultiWidthDiscriminator(arch, WIDTHS, n_share=n_share - 1, ndf=16, img_channels=1, attn_resolution=16)
        assert not any(isinstance(m, SlimmableSelfAttention) for m in d.shared.modules())
        assert parametrize.is_parametrized(shared_attn[0].theta)  # D's attention is spectrally normalised
        with pytest.raises(ValueError, match=rf"model\.discriminator\.attn_resolution must be one of {allowed}"):
            MultiWidthDiscriminator(arch, WIDTHS, ndf=16, img_channels=1, attn_resolution=32)
        d_off = MultiWidthDiscriminator(arch, WIDTHS, ndf=16, img_channels=1, attn_resolution=None)
        assert not any(isinstance(m, SlimmableSelfAttention) for m in d_off.modules())


# ----------------------------------------------------------------------------- 4. init
def _weights(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """Every conv/linear/embedding weight (the un-normalised original under spectral norm)."""
    out = []
    for name, m in module.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding)):
            w = m.parametrizations.weight.original if parametrize.is_parametrized(m) else m.weight
            out.append((name, w.detach()))
    return out


@pytest.mark.parametrize("arch", ["biggan32", "biggan_deep32"])
def test_every_weight_honours_init(arch):
    torch.manual_seed(0)
    normal = tiny_g(arch, num_classes=10, init="normal", ngf=64)
    weights = _weights(normal)
    assert len(weights) > 10
    for name, w in weights:
        if w.numel() >= 500:  # enough entries for a tight estimate
            assert abs(w.std().item() - 0.02) < 0.004, (name, w.std().item())
    ortho = tiny_g(arch, num_classes=10, init="ortho", ngf=64)
    for name, w in _weights(ortho):
        m = w.reshape(w.shape[0], -1)
        gram = m @ m.T if m.shape[0] <= m.shape[1] else m.T @ m
        torch.testing.assert_close(gram, torch.eye(gram.shape[0]), atol=1e-4, rtol=0, msg=name)
    d = MultiWidthDiscriminator(arch, WIDTHS, ndf=64, img_channels=1, num_classes=10, init="normal")
    for name, w in _weights(d):
        if w.numel() >= 500:
            assert abs(w.std().item() - 0.02) < 0.004, (name, w.std().item())


# ----------------------------------------------------------------------------- 5. orthogonal regularization
class GradsAtGStep(pl.Callback):
    """Records G's gradients just before the G optimizer steps."""

    def __init__(self) -> None:
        self.grads: dict[str, torch.Tensor] = {}

    def on_train_start(self, trainer, pl_module) -> None:
        names = {id(p): n for n, p in pl_module.generator.named_parameters()}

        def hook(optimizer, args, kwargs):
            self.grads = {
                names[id(p)]: p.grad.clone() for g in optimizer.param_groups for p in g["params"] if p.grad is not None
            }

        trainer.optimizers[0].register_step_pre_hook(hook)


def test_ortho_reg_adds_exactly_the_analytic_gradient_once_per_g_step():
    beta = 1e-2
    grads = {}
    for b in (0.0, beta):
        torch.manual_seed(0)
        model = tiny_model(ortho_reg=b)
        cb = GradsAtGStep()
        torch.manual_seed(1)
        fit(model, iterations=1, callbacks=[cb])
        grads[b] = cb.grads
    torch.manual_seed(0)
    params = dict(tiny_model().generator.named_parameters())  # the weights at the G step (one iteration)
    checked = 0
    for name, p in params.items():
        diff = grads[beta][name] - grads[0.0][name]
        if p.ndim < 2 or name == "shared.weight":
            assert diff.abs().max() == 0, name  # 1-D parameters and the shared embedding: untouched
            continue
        w = p.detach().reshape(p.shape[0], -1)
        off = (w @ w.T) * (1 - torch.eye(w.shape[0]))
        expected = (4 * beta * off @ w).reshape(p.shape)  # d/dW of beta * ||W W^T * (1 - I)||_F^2
        torch.testing.assert_close(diff, expected, rtol=1e-3, atol=1e-7, msg=name)
        checked += 1
    assert checked > 10


def test_ortho_penalty_value():
    model = tiny_model(ortho_reg=0.5)
    r = sum(
        ((p.reshape(p.shape[0], -1) @ p.reshape(p.shape[0], -1).T) * (1 - torch.eye(p.shape[0]))).square().sum()
        for n, p in model.generator.named_parameters()
        if p.ndim >= 2 and n != "shared.weight"
    )
    torch.testing.assert_close(model.ortho_penalty(), 0.5 * r)
    with pytest.raises(ValueError, match=r"optim\.ortho_reg"):
        tiny_model(ortho_reg=-1.0)


# ----------------------------------------------------------------------------- 6. spectral norm in G
def test_spectral_norm_in_g_switch():
    torch.manual_seed(0)
    on = tiny_g(num_classes=10, init="normal", spectral_norm=True).eval()
    layers = [m for m in on.modules() if isinstance(m, (SlimmableLinear, SlimmableConv2d))]
    assert len(layers) > 10 and all(parametrize.is_parametrized(m, "weight") for m in layers)
    assert not parametrize.is_parametrized(on.shared)
    for m in layers:  # sigma of the FULL weight is 1 (init N(0, 0.02) is far from it)
        sigma = torch.linalg.matrix_norm(m.weight.detach().reshape(m.weight.shape[0], -1), ord=2)
        assert abs(sigma.item() - 1.0) < 0.05, (type(m).__name__, sigma.item())
    cbn = next(m for m in on.modules() if isinstance(m, SlimmableProjectedBatchNorm2d))
    assert parametrize.is_parametrized(cbn.gain) and parametrize.is_parametrized(cbn.bias)
    off = tiny_g(num_classes=10, init="normal", spectral_norm=False)
    assert not any(parametrize.is_parametrized(m) for m in off.modules())
    sigma = torch.linalg.matrix_norm(off.blocks[0].conv1.weight.detach().reshape(16, -1), ord=2)
    assert sigma < 0.5


# ----------------------------------------------------------------------------- 7. EMA
def _float_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


class RecordLive(pl.Callback):
    def __init__(self) -> None:
        self.live, self.ema = [], []

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        self.live.append(_float_state(pl_module.generator))
        self.ema.append(_float_state(pl_module.generator_ema))


def test_ema_follows_the_decay_formula_for_parameters_and_buffers():
    torch.manual_seed(0)
    decay, start = 0.8, 2
    model = tiny_model(ema_decay=decay, ema_start=start)
    assert not any(p.requires_grad for p in model.generator_ema.parameters())
    opt_params = {id(p) for opt in model.configure_optimizers() for g in opt.param_groups for p in g["params"]}
    assert not opt_params & {id(p) for p in model.generator_ema.parameters()}
    rec = RecordLive()
    fit(model, iterations=4, callbacks=[rec])
    assert model.iteration == 4
    expected = None
    for it, (live, ema) in enumerate(zip(rec.live, rec.ema), start=1):
        if it < start:  # plain copy before start
            expected = {k: v.clone() for k, v in live.items()}
        else:
            expected = {
                k: decay * expected[k] + (1 - decay) * v if v.is_floating_point() else v.clone()
                for k, v in live.items()
            }
        for k, v in ema.items():
            if k.endswith(("._u", "._v")):  # spectral norm's vectors: recomputed for the EMA weights instead
                continue
            torch.testing.assert_close(v, expected[k], rtol=1e-5, atol=1e-6, msg=f"iteration {it}: {k}")
        if it < start:
            assert all(torch.equal(ema[k], live[k]) for k in live if not k.endswith(("._u", "._v")))
    buffers = [k for k in rec.ema[-1] if "running_mean" in k]
    assert buffers and any(not torch.equal(rec.ema[-1][k], rec.live[-1][k]) for k in buffers)  # buffers averaged


@torch.no_grad()
def test_ema_spectral_norm_divides_by_the_spectral_norm_of_the_ema_weights():
    """Defect: lerping the parametrization's _u/_v buffers gave vectors of norm < 1, so the EMA
    generator's sigma = u^T W v was underestimated and its layers scaled up."""
    torch.manual_seed(0)
    model = tiny_model(ema_decay=0.5, ema_start=0)
    g = model.generator.train()
    for _ in range(6):  # the live weights keep changing (as under training) and G's u/v follow them
        for p in g.parameters():
            p.add_(0.5 * p.std() * torch.randn_like(p))
        for w in WIDTHS:
            g(model.noise(4), w, model.random_labels(4))
        model.update_ema()
    ema = model.generator_ema.eval()
    layers = [m for m in ema.modules() if parametrize.is_parametrized(m, "weight")]
    assert len(layers) > 10

    def sigma_errors() -> list[float]:
        errors = []
        for m in layers:
            sn = m.parametrizations.weight[0]
            w = m.parametrizations.weight.original
            w_mat = w.reshape(w.shape[0], -1)  # dim 0 first, as the parametrization (no transposed convs here)
            assert abs(sn._u.norm() - 1) < 1e-5 and abs(sn._v.norm() - 1) < 1e-5  # unit vectors, never averaged
            sigma_used = torch.dot(sn._u, w_mat @ sn._v)
            errors.append(abs(float(sigma_used / torch.linalg.matrix_norm(w_mat, 2)) - 1))
        return errors

    # Training tracks sigma with a few device-side iterations per update (no host sync): these updates
    # (half of every weight replaced by noise each time) move faster than any real EMA, so only within 10%
    # here; at a real decay the tracked vectors are the converged ones (tests/test_host_syncs.py).
    assert max(sigma_errors()) < 0.1
    # What samples and evaluation see (standing_statistics converges first, then restores the vectors):
    tracked = [m.parametrizations.weight[0]._u.clone() for m in layers]
    with model.standing_statistics():
        assert max(sigma_errors()) < 0.02
        for m in layers:  # hence the layer the EMA generator runs has spectral norm 1
            assert abs(torch.linalg.matrix_norm(m.weight.reshape(m.weight.shape[0], -1), 2) - 1) < 0.02
    assert all(torch.equal(m.parametrizations.weight[0]._u, u) for m, u in zip(layers, tracked))
    # an older checkpoint's averaged (shrunken) vectors are repaired before sampling, export and eval
    from slimgan_pl.inference import prepare_sampling_generator

    for m in layers:
        m.parametrizations.weight[0]._u.mul_(0.8)
    assert abs(torch.linalg.matrix_norm(layers[0].weight.reshape(layers[0].weight.shape[0], -1), 2) - 1.25) < 0.05
    generator, record = prepare_sampling_generator(model)
    assert generator is ema and record["weights"] == "ema"
    for m in layers:
        assert abs(torch.linalg.matrix_norm(m.weight.reshape(m.weight.shape[0], -1), 2) - 1) < 0.02


def test_ema_checkpoint_loads_and_is_used_for_sampling_and_deploy(tmp_path):
    torch.manual_seed(0)
    model = tiny_model(ema_decay=0.5, ema_start=0)
    trainer = fit(model, iterations=2)
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    trainer.save_checkpoint(ckpt)
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    assert any(k.startswith("generator_ema.") for k in state)
    for loaded in (load_slimgan(ckpt), SlimGAN.load_from_checkpoint(ckpt, map_location="cpu", weights_only=True)):
        for k, v in model.generator_ema.state_dict().items():
            assert torch.equal(loaded.generator_ema.state_dict()[k], v), k
        assert loaded.sampling_generator is loaded.generator_ema
        assert select_generator(loaded, "auto") == (loaded.generator_ema, "ema")
    model.eval()
    z_model = model.sample(3, 0.5, seed=2)
    g = model.generator_ema
    rng = torch.Generator().manual_seed(2)
    z, y = model.noise(3, rng), model.random_labels(3, rng)
    with torch.no_grad():
        torch.testing.assert_close(z_model, g.eval()(z, 0.5, y))
        assert (model.generator(z, 0.5, y) - z_model).abs().max() > 1e-4  # not the live generator
    dense = ex.export_model(model, 0.5)  # export checks the dense model against the EMA generator
    assert dense.meta["weights"] == "ema"


def _bn_batch_stats(model: SlimGAN, width: float, n_batches: int, batch: int, seed: int):
    """Replay the standing-statistics batches; per-batch mean/unbiased var at the last BN of ``width``."""
    g = model.generator_ema
    bn = g.bn.for_width(width)
    stats = []
    hook = bn.register_forward_hook(
        lambda m, args, out: stats.append(
            (args[0].mean((0, 2, 3)), args[0].transpose(0, 1).flatten(1).var(1, unbiased=True))
        )
    )
    rng = torch.Generator().manual_seed(seed)
    g.eval()
    for m in g.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.train()
    with torch.no_grad():
        for w in model.widths:
            for _ in range(n_batches):
                z, y = model.noise(batch, rng), model.random_labels(batch, rng)
                if w == width:
                    g(z, w, y)
    hook.remove()
    g.eval()
    return stats


def test_standing_statistics_average_the_per_batch_statistics_and_are_restored():
    torch.manual_seed(0)
    model = tiny_model(ema_decay=0.5, ema_start=0, ema_standing_batches=3, ema_standing_batch_size=6)
    fit(model, iterations=2)
    model.train()
    assert model.bn_statistics == "standing"
    before = _float_state(model)
    with model.standing_statistics() as mode:
        assert mode == "standing"
        standing = _float_state(model.generator_ema)
        sampled = model.sample(4, 1.0, seed=0)
    after = _float_state(model)
    assert all(torch.equal(after[k], before[k]) for k in before)  # restored: training continues unchanged
    assert model.generator_ema.training  # mode restored too
    assert not torch.equal(model.sample(4, 1.0, seed=0), sampled)  # the statistics did change the samples
    for w in WIDTHS:
        stats = _bn_batch_stats(model, w, 3, 6, seed=0)
        assert len(stats) == 3
        i = WIDTHS.index(w)
        mean = torch.stack([m for m, _ in stats]).mean(0)
        var = torch.stack([v for _, v in stats]).mean(0)
        torch.testing.assert_close(standing[f"bn.bns.{i}.running_mean"], mean, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(standing[f"bn.bns.{i}.running_var"], var, rtol=1e-4, atol=1e-5)
    assert tiny_model().bn_statistics == "running"  # no EMA: running statistics


def test_sample_does_not_mutate_the_model():
    torch.manual_seed(0)
    model = tiny_model(ema_decay=0.9)
    fit(model, iterations=1)
    model.train()
    before = _float_state(model)
    model.sample(5, 0.25, seed=1)
    model.sample(5, 1.0, seed=1, truncation=0.5)
    assert all(torch.equal(v, before[k]) for k, v in _float_state(model).items())
    assert model.generator.training and model.generator_ema.training


@pytest.mark.parametrize(
    "kw, key",
    [
        (dict(ema_decay=1.0), "ema.decay"),
        (dict(ema_start=-1), "ema.start"),
        (dict(ema_standing_batch_size=0), "ema.standing_batch_size"),
    ],
)
def test_ema_settings_are_checked(kw, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        tiny_model(**kw)


# ----------------------------------------------------------------------------- 8. truncation
@pytest.mark.parametrize("arch", ["biggan32", "biggan_deep32"])
def test_truncation_with_biggan_archs(arch):
    torch.manual_seed(0)
    model = tiny_model(arch)
    a, b = model.sample(4, 0.5, seed=0, truncation=0.5), model.sample(4, 0.5, seed=0)
    assert torch.isfinite(a).all() and a.abs().max() <= 1 and not torch.equal(a, b)


# ----------------------------------------------------------------------------- 9. archs, D sharing, configs
@pytest.mark.parametrize("arch, n_blocks", [("biggan32", 4), ("biggan_deep32", 6)])
@pytest.mark.parametrize("num_classes", [0, 10])
def test_discriminator_plans_share_blocks(arch, n_blocks, num_classes):
    torch.manual_seed(0)
    for n_share in (0, 2, n_blocks):
        d = MultiWidthDiscriminator(arch, WIDTHS, n_share=n_share, ndf=16, img_channels=1, num_classes=num_classes)
        assert d.n_blocks == n_blocks and len(d.shared) == n_share
        assert all(len(p.blocks) == n_blocks - n_share for p in d.private)
        x = torch.randn(3, 1, 32, 32)
        y = torch.tensor([0, 1, 2]) if num_classes else None
        assert d(x, 0.5, y).shape == (3,)
    with pytest.raises(ValueError, match=rf"slim\.n_share must be an integer in \[0, {n_blocks}\]"):
        MultiWidthDiscriminator(arch, WIDTHS, n_share=n_blocks + 1, ndf=16, img_channels=1)


def test_experiments_compose_and_biggan_optimizer_settings(make_cfg):
    cfg = make_cfg("experiment=cifar10_biggan", "model.generator.ngf=16", "model.discriminator.ndf=16")
    assert cfg.model.generator.arch == "biggan32" and cfg.model.generator.skip_z is True
    assert cfg.optim.n_dis == 4 and cfg.optim.g_lr == cfg.optim.d_lr == 2e-4
    assert list(cfg.optim.g_betas) == [0.0, 0.999] and cfg.optim.ortho_reg == 1e-4
    assert cfg.ema.decay == 0.9999 and cfg.ema.start == 1000 and cfg.callbacks.fid is None
    assert make_cfg().ema.decay is None  # EMA off by default
    # the paper's ImageNet setting: halved G lr and 2 D steps, through the existing keys
    cfg = make_cfg("experiment=fmnist_biggan", "optim.g_lr=5e-5", "optim.n_dis=2")
    model, datamodule, _ = build(cfg)
    opt_g, opt_d = model.configure_optimizers()
    assert opt_g.param_groups[0]["lr"] == 5e-5 and opt_d.param_groups[0]["lr"] == 2e-4
    assert model.hparams.n_dis == 2 and datamodule.n_dis == 2 and model.generator_ema is not None
    assert model.hparams.ortho_reg == 1e-4 and model.hparams.ema_decay == 0.999
    assert make_cfg("model=biggan_deep32").model.generator.arch == "biggan_deep32"


@pytest.mark.parametrize(
    "override, key",
    [
        ("model.generator.attn_resolution=12", "model.generator.attn_resolution"),
        ("model.discriminator.attn_resolution=32", "model.discriminator.attn_resolution"),
        ("model.generator.nz=130", "model.generator.nz"),
        ("model.generator.init=kaiming", "init"),
        ("ema.decay=1.5", "ema.decay"),
        ("optim.ortho_reg=-1", "optim.ortho_reg"),
    ],
)
def test_biggan_config_errors(make_cfg, override, key):
    cfg = make_cfg("model=biggan32", "ema=default", override)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        build(cfg)


# ----------------------------------------------------------------------------- end to end
def test_biggan32_trains_with_ema_evaluates_and_reloads(make_cfg, tmp_path, fmnist_root, monkeypatch):
    from slimgan_pl.metrics import fmnist_classifier as fc

    model, acc, info = fc.train_classifier(root=fmnist_root, epochs=1, limit=500, test_limit=100, log=None)
    classifier = fc.save_classifier(model, tmp_path / "clf.pt", acc, info)
    monkeypatch.setenv("SLIMGAN_METRICS_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    cfg = make_cfg(
        "model=biggan32",
        "ema=default",
        "ema.start=1",
        "ema.decay=0.9",
        "ema.standing_batches=2",
        "ema.standing_batch_size=8",
        "optim=biggan",
        "optim.n_dis=1",
        "train.g_steps=3",
        "data.batch_size=8",
        "data.limit=64",
        "callbacks.fid=null",
        "callbacks.sample_grid.every_n_iterations=3",
        "callbacks.sample_grid.n_samples=20",
        "evaluate.after_training=true",
        "evaluate.n_fake=20",
        "evaluate.n_real=20",
        "evaluate.latency_repeats=1",
        f"evaluate.classifier={classifier}",
    )
    summary = train(cfg)
    assert summary["iterations"] == 3
    assert all(math.isfinite(v["g"]) for v in summary["final_losses"].values())
    assert (out / "samples" / "w0.25" / "iter_000003.png").is_file()
    metrics_path = Path(summary["metrics"])  # 20 fakes: metrics-fmnist-<counts>.json, not the full metrics.json
    metrics = json.loads(metrics_path.read_text())
    assert metrics["generator"] == {
        "weights": "ema",
        "bn_statistics": "standing",
        "standing": {"batches_per_width": 2, "batch_size": 8, "seed": 0},
    }
    assert "BN standing statistics" in metrics_path.with_suffix(".md").read_text()
    loaded = SlimGAN.load_from_checkpoint(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert loaded.generator_ema is not None and loaded.num_classes == 10
    for w in loaded.widths:
        x = loaded.sample(4, w, seed=0)
        assert x.shape == (4, 1, 32, 32) and torch.isfinite(x).all()
