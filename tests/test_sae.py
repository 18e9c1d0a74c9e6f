"""SparseCoder unit tests on small random data (seconds)."""

from __future__ import annotations

import json

import pytest
import torch

from risk_core.errors import UsageError
from risk_core.sae import SaeConfig, SparseCoder, default_lr


def _sae(d=16, ef=4, k=4, seed=0):
    torch.manual_seed(seed)
    return SparseCoder(d, SaeConfig(d_in=d, expansion_factor=ef, k=k))


def _low_rank(n=2048, d=16, rank=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    basis = torch.randn(rank, d, generator=g)
    coef = torch.randn(n, rank, generator=g)
    return 7.0 * coef @ basis + 3.0  # non-unit scale and an offset, so input_scale/b_dec matter


def test_shapes_and_topk_sparsity():
    sae = _sae()
    x = torch.randn(10, 16)
    enc = sae.encode(x)
    assert enc.top_acts.shape == (10, 4) and enc.top_indices.shape == (10, 4)
    assert enc.pre_acts.shape == (10, 64)
    dense = sae.encode_dense(x)
    assert dense.shape == (10, 64)
    assert ((dense != 0).sum(-1) <= 4).all()
    out = sae(x)
    assert out.sae_out.shape == (10, 16) and out.latent_acts.shape == (10, 4)
    assert out.fvu.ndim == 0 and out.auxk_loss.item() == 0.0
    # decode(encode(x)) is what forward returns, in the original space
    torch.testing.assert_close(sae.decode(enc.top_acts, enc.top_indices), out.sae_out)
    torch.testing.assert_close(dense @ sae.W_dec + sae.b_dec, out.sae_out * sae.input_scale)


def test_decoder_unit_norm_and_gradient_projection():
    sae = _sae()
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(64))
    sae.W_dec.grad = torch.randn_like(sae.W_dec)
    sae.remove_gradient_parallel_to_decoder_directions()
    parallel = (sae.W_dec.grad * sae.W_dec).sum(1)
    assert parallel.abs().max() < 1e-5
    with torch.no_grad():
        sae.W_dec.mul_(3.0)
    sae.set_decoder_norm_to_unit_norm()
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(64))


def test_input_scale_gives_unit_mean_norm():
    sae = _sae()
    x = _low_rank()
    sae.fit_to_data(x)
    assert abs(float((x * sae.input_scale).norm(dim=1).mean()) - 1.0) < 1e-4


def test_save_load_roundtrip(tmp_path):
    sae = _sae()
    sae.fit_to_data(_low_rank())
    sae.save(tmp_path / "sae", extra={"layer": 3})
    assert json.loads((tmp_path / "sae" / "cfg.json").read_text())["layer"] == 3
    back = SparseCoder.load(tmp_path / "sae", expected_d_in=16)
    x = torch.randn(5, 16)
    torch.testing.assert_close(back(x).sae_out, sae(x).sae_out)
    assert back.cfg == sae.cfg and back.num_latents == 64


def test_load_d_in_mismatch_is_usage_error(tmp_path):
    _sae().save(tmp_path / "sae")
    with pytest.raises(UsageError, match="d_in=16"):
        SparseCoder.load(tmp_path / "sae", expected_d_in=32)
    with pytest.raises(UsageError):
        SparseCoder.load(tmp_path / "nothing-here")
    (tmp_path / "sae" / "sae.safetensors").write_bytes(b"garbage")
    with pytest.raises(UsageError, match="cannot read"):
        SparseCoder.load(tmp_path / "sae")


def _train(sae, x, steps, dead_mask=None, auxk_alpha=1 / 32, lr=None):
    opt = torch.optim.Adam(sae.parameters(), lr=lr or 1e-2)
    for step in range(steps):
        batch = x[(step * 256) % len(x) :][:256]
        out = sae(batch, dead_mask=dead_mask)
        (out.fvu + auxk_alpha * out.auxk_loss).backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        opt.step()
        opt.zero_grad()
        sae.set_decoder_norm_to_unit_norm()
    return sae


def test_fvu_decreases_on_low_rank_data():
    x = _low_rank()
    sae = _sae()
    sae.fit_to_data(x[:512])
    before = float(sae(x).fvu.detach())
    _train(sae, x, 150)
    after = float(sae(x).fvu.detach())
    assert after < 0.5 * before and after < 0.1


def _sparse_data(n=4096, d=16, n_features=48, seed=2):
    """Each row is a positive mix of 2 of 48 directions: a real dictionary to learn."""
    g = torch.Generator().manual_seed(seed)
    feats = torch.nn.functional.normalize(torch.randn(n_features, d, generator=g), dim=1)
    idx = torch.randint(0, n_features, (n, 2), generator=g)
    coef = torch.rand(n, 2, generator=g) + 0.5
    return 5.0 * (coef[..., None] * feats[idx]).sum(1)


def _alive(sae, x):
    enc = sae.encode(x)
    return len(set(enc.top_indices[enc.top_acts > 0].tolist()))


def test_auxk_revives_dead_latents():
    x = _sparse_data()
    alive = {}
    for alpha in (0.0, 1 / 32):
        sae = _sae()
        sae.fit_to_data(x[:512])
        # Latents 16.. start nearly dead: tiny encoder rows keep them out of every token's top-k.
        with torch.no_grad():
            sae.encoder.weight[16:] *= 0.02
        opt = torch.optim.Adam(sae.parameters(), lr=1e-2)
        since_fired = torch.zeros(64)
        for step in range(200):
            batch = x[(step * 256) % len(x) :][:256]
            out = sae(batch, dead_mask=since_fired >= 1024)
            (out.fvu + alpha * out.auxk_loss).backward()
            sae.remove_gradient_parallel_to_decoder_directions()
            opt.step()
            opt.zero_grad()
            sae.set_decoder_norm_to_unit_norm()
            since_fired += len(batch)
            since_fired[out.latent_indices[out.latent_acts > 0]] = 0
        alive[alpha] = _alive(sae, x)
    assert alive[1 / 32] > alive[0.0] + 10


def test_total_variance_override_matches_global_batch():
    sae = _sae()
    x = torch.randn(64, 16)
    full = sae(x)
    y = x * sae.input_scale
    tv = (y - y.mean(0)).pow(2).sum()
    parts = [sae(x[:32], total_variance=tv).fvu, sae(x[32:], total_variance=tv).fvu]
    torch.testing.assert_close(parts[0] + parts[1], full.fvu)


def test_default_lr_rule():
    assert default_lr(2**14) == pytest.approx(2e-4)


def _batchtopk(d=16, ef=4, k=4, seed=0):
    torch.manual_seed(seed)
    return SparseCoder(d, SaeConfig(d_in=d, expansion_factor=ef, k=k, activation="batchtopk"))


def test_unknown_activation_is_usage_error():
    with pytest.raises(UsageError, match=r"unknown SAE activation 'jumprelu' \(topk \| batchtopk\)"):
        SaeConfig(activation="jumprelu")  # type: ignore[arg-type]


def test_batchtopk_keeps_k_per_token_on_average_over_the_batch():
    sae = _batchtopk()
    x = _sparse_data()[:256]
    sae.fit_to_data(x)
    enc = sae.encode(x, batch_select=True)
    per_token = (enc.top_acts > 0).sum(-1)
    assert int(per_token.sum()) == 4 * 256  # k x N in all
    assert int(per_token.max()) > 4 or int(per_token.min()) < 4  # not k each
    assert float(sae.threshold) > 0  # the first batch sets the threshold
    # A topk SAE keeps exactly k per token whatever batch_select says.
    topk = _sae()
    topk.fit_to_data(x)
    assert ((topk.encode(x, batch_select=True).top_acts > 0).sum(-1) <= 4).all()


def test_batchtopk_threshold_learned_in_training_gives_about_k_in_use():
    x = _sparse_data()
    sae = _batchtopk()
    sae.fit_to_data(x[:512])
    opt = torch.optim.Adam(sae.parameters(), lr=1e-2)
    for step in range(200):
        out = sae(x[(step * 256) % len(x) :][:256], batch_select=True)
        out.fvu.backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        opt.step()
        opt.zero_grad()
        sae.set_decoder_norm_to_unit_norm()
    in_use = sae(x)  # no batch selection: the learned threshold decides
    l0 = float((in_use.latent_acts > 0).sum(-1).float().mean())
    assert 2 <= l0 <= 8, l0
    assert float(in_use.fvu.detach()) < 0.2
    # The inference path does not move the threshold.
    before = float(sae.threshold)
    sae(x[:256])
    assert float(sae.threshold) == before


def test_batchtopk_save_load_keeps_threshold_and_topk_files_have_none(tmp_path):
    sae = _batchtopk()
    x = _sparse_data()[:512]
    sae.fit_to_data(x)
    sae(x, batch_select=True)
    sae.save(tmp_path / "b")
    back = SparseCoder.load(tmp_path / "b", expected_d_in=16)
    assert back.cfg.activation == "batchtopk" and float(back.threshold) == float(sae.threshold)
    torch.testing.assert_close(back(x).sae_out, sae(x).sae_out)
    _sae().save(tmp_path / "t")
    from safetensors.torch import load_file

    assert "threshold" not in load_file(str(tmp_path / "t" / "sae.safetensors"))
    assert SparseCoder.load(tmp_path / "t").cfg.activation == "topk"
