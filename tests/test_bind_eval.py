"""Stage 2 end to end on the tiny model: mutate -> bind -> eval / explain, plus the metrics and bundle."""

from __future__ import annotations

import json
import sysconfig
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from bot.cli import main
from risk_core.errors import UsageError
from risk_core.evaluate import METHODS, auprc, auroc, ece, topk_hits

STDLIB = Path(sysconfig.get_paths()["stdlib"])
JAVA = """class Acc {
    int windowSum(int[] values, int lo, int hi) {
        int total = 0;
        for (int i = lo; i < hi; i++) {
            if (values[i] > 0 && i >= lo) {
                total += values[i] * 2;
            }
            total = total - 1;
        }
        return total;
    }
}
"""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, tiny_model_dir):
    """Mutants of a few stdlib files + a Java file, a random SAE, and one bound bundle."""
    from risk_core.sae import SaeConfig, SparseCoder

    d = tmp_path_factory.mktemp("stage2")
    (d / "Acc.java").write_text(JAVA)
    SparseCoder(64, SaeConfig(expansion_factor=4, k=8)).save(d / "sae")
    runner = CliRunner()
    srcs = [str(STDLIB / "json"), str(STDLIB / "textwrap.py"), str(STDLIB / "shlex.py")]
    r = runner.invoke(
        main,
        [
            "data",
            "mutate",
            *srcs,
            "--out",
            str(d / "py.jsonl"),
            "--per-file",
            "6",
            "--per-function",
            "2",
            "--seed",
            "0",
        ],
    )
    assert r.exit_code == 0, r.output
    r = runner.invoke(
        main,
        [
            "data",
            "mutate",
            str(d / "Acc.java"),
            "--out",
            str(d / "java.jsonl"),
            "--per-file",
            "5",
            "--per-function",
            "5",
        ],
    )
    assert r.exit_code == 0, r.output
    (d / "all.jsonl").write_text((d / "py.jsonl").read_text() + (d / "java.jsonl").read_text())
    # java.jsonl is read and then left out by --languages: combining files and filtering both run
    r = runner.invoke(
        main,
        [
            "bind",
            "--data",
            str(d / "py.jsonl"),
            "--data",
            str(d / "java.jsonl"),
            "--sae",
            str(d / "sae"),
            "--model",
            str(tiny_model_dir),
            "--layer",
            "2",
            "--out",
            str(d / "bundle"),
            "--epochs",
            "40",
            "--label-latents",
            "4",
            "--languages",
            "python",
            "--device",
            "cpu",
        ],
    )
    assert r.exit_code == 0, r.output
    return d


def test_bundle_layout_and_metrics(workdir):
    b = workdir / "bundle"
    for f in (
        "cfg.json",
        "sae/cfg.json",
        "sae/sae.safetensors",
        "probe/cfg.json",
        "probe/probe.safetensors",
        "raw_probe/probe.safetensors",
        "metrics.json",
        "latents.json",
    ):
        assert (b / f).is_file(), f
    cfg = json.loads((b / "cfg.json").read_text())
    assert cfg["d_model"] == 64 and cfg["layer"] == 2 and cfg["framing"] == "bare" and cfg["languages"] == ["python"]
    m = json.loads((b / "metrics.json").read_text())
    assert len(m["data_sha256"]) == 64 and m["seed"] == 0
    assert [Path(x["path"]).name for x in m["data"]] == ["py.jsonl", "java.jsonl"]
    assert all(len(x["sha256"]) == 64 and x["samples"] > 0 for x in m["data"])
    assert m["learning_curve"] and m["learning_curve"][0]["lines"] >= 100
    assert {"pttrust", "raw-probe"} <= set(m["val"])
    lat = json.loads((b / "latents.json").read_text())
    assert lat["_method"]["name"] == "overrepresentation-v1"
    entries = {k: v for k, v in lat.items() if not k.startswith("_")}
    assert entries and all({"label", "clarity", "terms", "examples", "buggy_share"} <= set(v) for v in entries.values())


def test_eval_json_shape_all_methods_and_cross_language(workdir, tiny_model_dir):
    r = CliRunner().invoke(
        main,
        [
            "eval",
            str(workdir / "all.jsonl"),
            "--bundle",
            str(workdir / "bundle"),
            "--model",
            str(tiny_model_dir),
            "--format",
            "json",
            "--device",
            "cpu",
        ],
    )
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert set(rep["methods"]) == set(METHODS)
    for method, per_lang in rep["methods"].items():
        assert {"all", "python", "java"} <= set(per_lang)  # java: bound on python only -> cross-language
        for cell in per_lang.values():
            assert set(cell) == {"top1", "top3", "auroc", "auprc", "ece", "n"}
        assert per_lang["all"]["n"] > 0
        assert (per_lang["all"]["ece"] is None) == (method not in ("pttrust", "raw-probe"))
    assert "by_operator" in rep and rep["by_operator"]["pttrust"]
    assert rep["cross_language"] == ["java"]
    lengths = rep["findings_by_length"]["pttrust"]  # each function-length bucket with its bugs and clean code
    assert lengths and set(lengths) <= {"1-10", "11-20", "21-40", "41+"}
    assert sum(c["n_bugs"] for c in lengths.values()) == rep["findings"]["pttrust"]["all"]["n_bugs"]
    assert all("bugs_found" in c for c in lengths.values())


def test_eval_markdown_and_explain(workdir, tiny_model_dir):
    runner = CliRunner()
    r = runner.invoke(
        main,
        [
            "eval",
            str(workdir / "java.jsonl"),
            "--bundle",
            str(workdir / "bundle"),
            "--model",
            str(tiny_model_dir),
            "--format",
            "markdown",
            "--device",
            "cpu",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "| pttrust |" in r.stdout and "| random |" in r.stdout
    r = runner.invoke(
        main,
        [
            "explain",
            f"{workdir / 'Acc.java'}:5",
            "--bundle",
            str(workdir / "bundle"),
            "--model",
            str(tiny_model_dir),
            "--device",
            "cpu",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "risk" in r.output and "latent" in r.output
    r = runner.invoke(
        main,
        ["explain", f"{workdir / 'Acc.java'}:99", "--bundle", str(workdir / "bundle"), "--model", str(tiny_model_dir)],
    )
    assert r.exit_code == 2 and r.stderr.startswith("error:") and "Traceback" not in r.output


def test_bundle_round_trip_and_refuses_other_model(workdir):
    from risk_core.artifacts import Bundle

    b = Bundle.load(workdir / "bundle")
    ok = SimpleNamespace(name="m", d_model=64, sha256=None, num_layers=4)
    b.check_compatible(ok)
    with pytest.raises(UsageError, match="d_model"):
        b.check_compatible(SimpleNamespace(name="m", d_model=32, sha256=None, num_layers=4))
    b.cfg.model_sha256 = "a" * 64
    with pytest.raises(UsageError, match="sha256"):
        b.check_compatible(SimpleNamespace(name="m", d_model=64, sha256="b" * 64, num_layers=4))


def test_bundle_refuses_a_probe_bound_on_another_sae(workdir, tmp_path):
    import shutil

    from risk_core.artifacts import Bundle
    from risk_core.sae import SaeConfig, SparseCoder

    shutil.copytree(workdir / "bundle", tmp_path / "b")
    SparseCoder(64, SaeConfig(expansion_factor=2, k=8)).save(tmp_path / "b" / "sae")
    with pytest.raises(UsageError, match="bound on another SAE"):
        Bundle.load(tmp_path / "b")


def test_review_framing_maps_back_to_the_same_lines(tiny_model_dir):
    from risk_core.encode import EncodeConfig
    from risk_core.features import compute_features, frame_text
    from risk_core.model_loading import load_model

    loaded = load_model(str(tiny_model_dir), device="cpu")
    code = "def f(x):\n\n    y = x + 1\n    return y\n"
    text, off = frame_text(code, "python", "review", loaded.tokenizer)
    assert text.splitlines()[off : off + 4] == code.splitlines()
    cfg = EncodeConfig(layer=2, surprise=True)
    bare, review = (compute_features(loaded, [code], ["python"], cfg, framing=f)[0] for f in ("bare", "review"))
    # (a blank line may hold a newline token; candidates are filtered by candidate_mask later)
    assert bare.line_numbers == review.line_numbers and {1, 3, 4} <= set(review.line_numbers)
    assert review.surprise.shape == (len(review.line_numbers), 3)


def test_bad_data_is_a_one_line_error(tmp_path, tiny_model_dir):
    (tmp_path / "d.jsonl").write_text("not json\n")
    r = CliRunner().invoke(
        main,
        [
            "bind",
            "--data",
            str(tmp_path / "d.jsonl"),
            "--sae",
            str(tmp_path),
            "--model",
            str(tiny_model_dir),
            "--out",
            str(tmp_path / "b"),
        ],
    )
    assert r.exit_code == 2 and r.stderr.startswith("error:") and "d.jsonl:1" in r.stderr


def test_metrics_against_hand_computed_values():
    y = np.array([0, 0, 1, 1])
    assert auroc([0.1, 0.4, 0.35, 0.8], y) == pytest.approx(0.75)
    assert auroc([0.5, 0.5, 0.5, 0.5], y) == pytest.approx(0.5)  # ties count half
    assert auprc([0.1, 0.4, 0.35, 0.8], y) == pytest.approx((1 + 2 / 3) / 2)
    assert ece([0.0, 0.0, 1.0, 1.0], y) == pytest.approx(0.0)
    assert ece([0.5] * 4, y) == pytest.approx(0.0) and ece([0.9] * 4, y) == pytest.approx(0.4)
    assert topk_hits([0.9, 0.1, 0.2, 0.8], [0, 1, 0, 1], [0, 0, 1, 1], 1) == (1, 2)


def test_sweep_layers_reports_every_layer_from_one_pass(workdir, tiny_model_dir):
    out = workdir / "sweep.json"
    r = CliRunner().invoke(
        main,
        [
            "sweep-layers",
            "--data",
            str(workdir / "py.jsonl"),
            "--model",
            str(tiny_model_dir),
            "--layers",
            "1,2,4",
            "--out",
            str(out),
            "--device",
            "cpu",
        ],
    )
    assert r.exit_code == 0, r.output
    report = json.loads(out.read_text())
    assert sorted(report["layers"]) == ["1", "2", "4"]
    assert report["best_layer"] in (1, 2, 4)
    assert all(0 <= m["auroc"] <= 1 and m["n"] > 0 for m in report["layers"].values())
    assert f"best layer: {report['best_layer']}" in r.output


def test_label_latents_relabels_a_bundle(workdir, tiny_model_dir, tmp_path):
    out = tmp_path / "latents.json"
    args = ["label-latents", "--data", str(workdir / "py.jsonl"), "--bundle", str(workdir / "bundle")]
    args += ["--model", str(tiny_model_dir), "--latents", "3", "--max-files", "6", "--device", "cpu"]
    r = CliRunner().invoke(main, [*args, "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "latent(s) described ->" in r.stderr
    lat = json.loads(out.read_text())
    method = lat.pop("_method")
    assert method["name"] == "overrepresentation-v1" and method["min_clarity"] == 0.5
    assert len(method["data"][0]["sha256"]) == 64 and method["tokens"] > 0
    assert 1 <= len(lat) <= 3
    for entry in lat.values():
        assert entry["label"] is None or entry["clarity"] >= 0.5
    # the same data, the same descriptions
    again = tmp_path / "again.json"
    assert CliRunner().invoke(main, [*args, "--out", str(again)]).exit_code == 0
    assert json.loads(again.read_text()) == {**lat, "_method": method}
    r = CliRunner().invoke(main, [*args[:-2], "--min-clarity", "2"])
    assert r.exit_code == 2 and "--min-clarity must be between 0 and 1" in r.stderr


def test_eval_and_explain_default_to_the_shipped_bundle(tmp_path, monkeypatch):
    import bot.cli.evaluate as ev

    seen = {}

    def fake_load(bundle_dir, model_name, device, quantize):
        seen["bundle"] = ev._bundle_dir(bundle_dir, model_name)
        raise UsageError("stop here")

    monkeypatch.setattr(ev, "_load", fake_load)
    code = tmp_path / "a.py"
    code.write_text("x = 1\n")
    r = CliRunner().invoke(main, ["explain", f"{code}:1"])
    assert r.exit_code == 2 and "stop here" in r.stderr
    assert seen["bundle"].name == "qwen2.5-coder-0.5b" and (seen["bundle"] / "cfg.json").is_file()


def test_eval_markdown_shows_bugs_found_and_the_findings_by_function_length():
    from risk_core.evaluate import to_markdown

    cell = {"top5": 0.9, "n_bugs": 2, "false_per_1000": 1.5, "findings": 3, "precision": 0.67, "bugs_found": 0.5}
    rep = {
        "methods": {"pttrust": {"all": {"top1": 0.5, "top3": 0.8, "auroc": 0.7, "auprc": 0.3, "ece": 0.1, "n": 2}}},
        "threshold": 0.6,
        "findings": {"pttrust": {"all": cell}},
        "findings_by_length": {"pttrust": {"1-10": cell, "41+": {**cell, "findings": 0, "precision": None}}},
    }
    md = to_markdown(rep)
    assert "| pttrust | all | 2 | 0.900 | 1.500 | 0.670 | 0.500 |" in md
    assert "| 1-10 | 2 | 3 | 1.500 | 0.670 | 0.500 |" in md and "| 41+ | 2 | 0 | 1.500 | – | 0.500 |" in md
    assert "by function length" not in to_markdown({**rep, "threshold": None})  # no threshold: no findings
