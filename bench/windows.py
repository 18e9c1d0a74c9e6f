"""What the review's scoring windows cost in accuracy: labeled samples scored the way `pttrust eval`
binds and evaluates (the whole sample encoded at once) and the way `pttrust review` scores a file
(each target line in its `candidates.scoring_window`), on the same lines.

    python bench/windows.py --data HELDOUT.jsonl [--data FIXED.jsonl] [--bundle DIR] [--out FILE]

Only samples where some candidate line's window is not the whole sample can differ, so only those are
encoded (twice); the report says how many there are, the line AUROC and top-1 of both ways on their
lines, the mean |risk change|, and the lines each way encodes. The issue allows windows to cost at
most 0.01 AUROC. Not a test: it measures, it does not judge.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--data", type=Path, action="append", required=True, help="labeled JSONL (repeatable)")
    ap.add_argument("--bundle", default=str(ROOT / "risk_core" / "weights" / "qwen2.5-coder-0.5b"))
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    from bot.run import load_scorer
    from risk_core.data.jsonl import read_jsonl
    from risk_core.evaluate import method_scores
    from risk_core.features import line_table
    from risk_core.languages import EXTENSIONS
    from risk_core.metrics import auroc, topk_hits
    from risk_core.score import FileToScore, Scorer, line_windows

    suffix = {language: ext for ext, language in reversed(EXTENSIONS.items())}  # a language's first suffix

    samples = [s for path in args.data for s in read_jsonl(path)]
    differ = []
    for s in samples:
        ws = set(line_windows(s.code, s.language))
        if ws and ws != {(1, len(s.code.splitlines()))}:
            differ.append((s, ws))
    scorer, _, _ = load_scorer(None, args.bundle, "cpu")
    assert isinstance(scorer, Scorer)
    affected = [s for s, _ in differ]
    t = time.perf_counter()
    table = line_table(scorer.loaded, affected, scorer.encode_cfg, sae=scorer.bundle.sae, keep_raw=True)
    whole_s = time.perf_counter() - t
    whole = method_scores(table, scorer.bundle)["pttrust"]
    t = time.perf_counter()
    files = [FileToScore(f"sample{k}{suffix.get(s.language, '.txt')}", s.code) for k, s in enumerate(affected)]
    review = {(k, lr.line): lr.risk for k, fs in enumerate(scorer.score(files)) for lr in fs.lines}
    review_s = time.perf_counter() - t
    keys = list(zip(table.sample_index.tolist(), table.line_numbers.tolist()))
    scored = np.array([k in review for k in keys])  # a line both ways score (all of them, normally)
    keys = [k for k, ok in zip(keys, scored) if ok]
    windowed = np.array([review[k] for k in keys])
    whole = whole[scored]
    labels, groups = table.labels.numpy()[scored] > 0, table.sample_index.numpy()[scored]

    def cell(scores) -> dict:
        hits, n = topk_hits(scores, labels, groups, 1)
        return {"auroc": round(float(auroc(scores, labels) or float("nan")), 4), "top1": round(hits / max(n, 1), 4)}

    result = {
        "data": [str(p) for p in args.data],
        "samples": len(samples),
        "samples_whose_windows_differ": len(affected),
        "their_bugs": int(sum(bool(s.buggy_lines) for s in affected)),
        "their_candidate_lines": len(keys),
        "lines_scored_one_way_only": int((~scored).sum()),
        "lines_encoded": {
            "whole_sample": sum(len(s.code.splitlines()) for s in affected),
            "review_windows": sum(hi - lo + 1 for _, ws in differ for lo, hi in ws),
        },
        "whole_sample": cell(whole) | {"seconds": round(whole_s, 1)},
        "review_windows": cell(windowed) | {"seconds": round(review_s, 1)},
        "mean_abs_risk_change": round(float(np.abs(windowed - whole).mean()), 4),
    }
    result["auroc_change"] = round(result["review_windows"]["auroc"] - result["whole_sample"]["auroc"], 4)
    print(json.dumps(result, indent=2))
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
