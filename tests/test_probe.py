"""RiskProbe: learns a planted signal, calibrates, explains, round-trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from risk_core.evaluate import auroc, ece
from risk_core.probe import ProbeConfig, RiskProbe, train_probe


def _planted(n=3000, f=40, informative=3, seed=0, base_rate=0.08):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, f, generator=g) * torch.linspace(0.5, 5.0, f)  # unequal scales: standardisation matters
    w = torch.zeros(f)
    w[:informative] = torch.tensor([2.0, -1.5, 1.0])[:informative] / x[:, :informative].std(0)
    logit = x @ w + float(np.log(base_rate / (1 - base_rate)))
    y = (torch.rand(n, generator=g) < torch.sigmoid(logit)).float()
    return x, y


@pytest.mark.parametrize("kind", ["logistic", "mlp"])
def test_learns_planted_linear_signal(kind):
    x, y = _planted()
    probe = train_probe(
        x[:2000], y[:2000], ProbeConfig(kind=kind, epochs=60, l1=1e-2, seed=0), x[2000:2500], y[2000:2500]
    )
    with torch.no_grad():
        r = probe.risk(x[2500:]).numpy()
    assert auroc(r, y[2500:].numpy()) > 0.8
    if kind == "logistic":
        w = probe.feature_weights()
        # the L1 proximal step zeroes most noise features and keeps the planted ones heaviest
        assert set(torch.argsort(w, descending=True)[:3].tolist()) == {0, 1, 2}
        assert int((w == 0).sum()) >= 20


def test_calibration_reduces_ece():
    x, y = _planted(seed=1)
    probe = train_probe(x[:2000], y[:2000], ProbeConfig(epochs=60, seed=0), x[2000:2500], y[2000:2500])
    with torch.no_grad():
        calibrated = probe.risk(x[2500:]).numpy()
        uncalibrated = torch.sigmoid(probe.logits(x[2500:])).numpy()  # class-balanced training: too high
    yt = y[2500:].numpy()
    assert ece(calibrated, yt) < ece(uncalibrated, yt) / 2
    assert ece(calibrated, yt) < 0.05


@pytest.mark.parametrize("kind", ["logistic", "mlp"])
def test_contributions_and_round_trip(tmp_path, kind):
    x, y = _planted(n=600, f=12)
    probe = train_probe(x, y, ProbeConfig(kind=kind, epochs=10, hidden=8))
    c = probe.contributions(x[:5])
    assert c.shape == (5, 12)
    if kind == "logistic":
        torch.testing.assert_close(c.sum(1) + probe.net.bias, probe.logits(x[:5]), rtol=1e-4, atol=1e-4)
    probe.save(tmp_path / "p")
    assert (tmp_path / "p" / "cfg.json").is_file() and (tmp_path / "p" / "probe.safetensors").is_file()
    back = RiskProbe.load(tmp_path / "p")
    torch.testing.assert_close(back.risk(x[:50]), probe.risk(x[:50]))
    assert back.cfg == probe.cfg


def test_bad_inputs_are_usage_errors():
    from risk_core.errors import UsageError

    with pytest.raises(UsageError):
        train_probe(torch.randn(10, 3), torch.zeros(10), ProbeConfig())
    with pytest.raises(UsageError):
        RiskProbe(ProbeConfig(kind="forest", n_features=3))
