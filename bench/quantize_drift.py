"""Risk drift of a faster way to run the model on CPU: the same lines scored in float32 and under
``--against`` (``int8``: dynamic int8 linear layers; ``bfloat16``: the blocks in bfloat16, the review's
default on CPUs with AMX or AVX-512 BF16).

    python bench/quantize_drift.py [--against int8|bfloat16] [--bundle DIR] [--max-lines 120] FILE...
    python bench/quantize_drift.py [--against int8|bfloat16] [--bundle DIR] --data LABELED.jsonl [--max-samples 120]

Prints, per file and overall, the max and mean absolute difference of the line risks and the time of
each pass (float32 vs the other, same run). Each file is scored on its first ``--max-lines`` lines.
With ``--data`` (labeled samples, e.g. held-out real bugs) it reports the bundle's line AUROC and top-1
under each, and their change (the issue allows a default only at <= 0.005 AUROC). Not a test: it
measures, it does not judge.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WAYS = {"float32": {}, "int8": {"quantize": "int8"}, "bfloat16": {"dtype": "bfloat16"}}
"""load_model / load_scorer arguments of each way to run the model (besides float32's defaults)."""
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("files", nargs="*", type=Path)
    ap.add_argument("--data", type=Path, default=None, help="labeled JSONL: AUROC / top-1 under each")
    ap.add_argument("--max-samples", type=int, default=120)
    ap.add_argument("--bundle", default=str(ROOT / "risk_core" / "weights" / "qwen2.5-coder-0.5b"))
    ap.add_argument("--max-lines", type=int, default=120)
    ap.add_argument("--against", choices=("int8", "bfloat16"), default="int8", help="the way compared with float32")
    args = ap.parse_args()

    if args.data is not None:
        return labeled_drift(args.bundle, args.data, args.max_samples, args.against)
    if not args.files:
        ap.error("give FILE... or --data")
    from bot.run import load_scorer
    from risk_core.score import FileToScore

    requests = []
    for path in args.files:
        lines = path.read_text().splitlines()
        requests.append(FileToScore(str(path), "\n".join(lines[: args.max_lines]) + "\n"))
    risks, times = {}, {}
    for way in ("float32", args.against):
        scorer, _, _ = load_scorer(None, args.bundle, "cpu", **{"dtype": "float32", **WAYS[way]})
        t = time.perf_counter()
        scored = scorer.score(requests)
        times[way] = round(time.perf_counter() - t, 2)
        risks[way] = {(fs.path, lr.line): lr.risk for fs in scored for lr in fs.lines}
        del scorer
    per_file, all_diffs = {}, []
    for req in requests:
        diffs = [abs(r - risks[args.against][k]) for k, r in risks["float32"].items() if k[0] == req.path]
        all_diffs += diffs
        per_file[req.path] = {
            "lines": len(diffs),
            "max_abs": round(max(diffs, default=0.0), 4),
            "mean_abs": round(sum(diffs) / max(len(diffs), 1), 4),
        }
    result = {
        "files": per_file,
        "lines": len(all_diffs),
        "max_abs": round(max(all_diffs, default=0.0), 4),
        "mean_abs": round(sum(all_diffs) / max(len(all_diffs), 1), 4),
        "score_s": times,
        "speedup": round(times["float32"] / max(times[args.against], 1e-9), 2),
    }
    print(json.dumps(result, indent=2))
    return 0


def labeled_drift(bundle_dir: str, data: Path, max_samples: int, against: str) -> int:
    """The bundle's metrics on the first ``max_samples`` labeled samples, float32 against ``against``."""
    from risk_core.artifacts import Bundle
    from risk_core.data.jsonl import read_jsonl
    from risk_core.evaluate import evaluate
    from risk_core.model_loading import load_model

    samples = read_jsonl(data)[:max_samples]
    bundle = Bundle.load(bundle_dir)
    enc = bundle.cfg.encode_config(surprise=False)
    out: dict = {"data": str(data), "samples": len(samples)}
    for way in ("float32", against):
        kwargs = {"dtype": "float32", **WAYS[way]}
        loaded = load_model(bundle.cfg.model_name, device="cpu", up_to_layer=bundle.cfg.layer, **kwargs)
        t = time.perf_counter()
        report = evaluate(loaded, bundle, samples, enc)
        cell = report["methods"]["pttrust"]["all"]
        out[way] = {k: cell.get(k) for k in ("auroc", "top1", "top3")} | {"seconds": round(time.perf_counter() - t, 1)}
        del loaded
    out["auroc_change"] = round(out[against]["auroc"] - out["float32"]["auroc"], 4)
    out["speedup"] = round(out["float32"]["seconds"] / max(out[against]["seconds"], 1e-9), 2)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
