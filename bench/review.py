"""Benchmark: end-to-end dry-run `pttrust review` of a generated diff (300 added lines over 10
files by default) with the embedded model, against the naive way (score every line of every touched
file) in the same run.

    python bench/review.py --bundle DIR [--model NAME] [--device auto] [--files 10] [--lines 300]

Targets (docs): <= 30 s on a 2-core CPU, <= 2 s on a GPU, model load from the prepared cache
included. Prints one JSON object; exits 1 when the end-to-end time misses the target for the device.
The model must be prepared first (`pttrust models prepare`); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# A realistic mix of Python lines; the generated files are ~4x longer than their added part, as a
# PR usually touches a small part of each file (that is what targeted scoring saves on).
SNIPPETS = [
    "def {f}(items, limit=10):",
    "    total = 0",
    "    for i, item in enumerate(items):",
    "        if i >= limit:",
    "            break",
    "        total += item.get('value', 0)",
    "    return total / max(len(items), 1)",
    "",
    "class {C}:",
    "    def __init__(self, path):",
    "        self.path = path",
    "        self.cache = {{}}",
    "    def load(self, key):",
    "        if key in self.cache:",
    "            return self.cache[key]",
    "        with open(self.path) as fh:",
    "            data = json.load(fh)",
    "        self.cache[key] = data.get(key)",
    "        return self.cache[key]",
    "",
]


def make_change(n_files: int, n_added: int, context_factor: int, seed: int = 0):
    """Files (new side) and a unified diff adding n_added lines spread over n_files files."""
    rng = random.Random(seed)
    files, diff = {}, []
    per_file = [n_added // n_files + (1 if i < n_added % n_files else 0) for i in range(n_files)]
    for i, n in enumerate(per_file):

        def line(k, i=i):
            return SNIPPETS[k % len(SNIPPETS)].format(f=f"fn_{i}_{k}", C=f"Thing{i}_{k}")

        before = [line(k) for k in range(n * context_factor)]
        at = rng.randrange(len(before) + 1)
        added = [line(k + 7) for k in range(n)]
        new = before[:at] + added + before[at:]
        path = f"pkg/mod_{i}.py"
        files[path] = "\n".join(new) + "\n"
        diff += [f"diff --git a/{path} b/{path}", f"--- a/{path}", f"+++ b/{path}", f"@@ -{at},0 +{at + 1},{n} @@"] + [
            f"+{t}" for t in added
        ]
    return files, "\n".join(diff) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--files", type=int, default=10)
    ap.add_argument("--lines", type=int, default=300)
    ap.add_argument("--context-factor", type=int, default=4, help="file length / added lines")
    args = ap.parse_args()

    from bot.config import ReviewConfig
    from bot.context import file_to_score, working_tree_reader
    from bot.formats import format_report
    from bot.render import make_environment, render_comment, render_summary
    from bot.review import review
    from bot.run import load_scorer

    files, diff = make_change(args.files, args.lines, args.context_factor)
    with tempfile.TemporaryDirectory() as tmp:
        for path, text in files.items():
            (Path(tmp) / path).parent.mkdir(parents=True, exist_ok=True)
            (Path(tmp) / path).write_text(text)

        t0 = time.perf_counter()
        scorer, model_name, bundle_name = load_scorer(args.model, args.bundle, args.device)
        t_load = time.perf_counter() - t0

        # Targeted: the real pipeline, rendered like a dry run (comments + summary + SARIF).
        t1 = time.perf_counter()
        report = review(diff, working_tree_reader(tmp), scorer, ReviewConfig(threshold=0.5))
        env = make_environment()
        for f in report.findings:
            render_comment(env, f, report)
        render_summary(env, report)
        format_report(report, "sarif", env)
        t_review = time.perf_counter() - t1

        # Naive: every line of every touched file.
        t2 = time.perf_counter()
        naive = scorer.score([file_to_score(p, t, None) for p, t in files.items()])
        t_naive = time.perf_counter() - t2

    import torch

    on_gpu = torch.cuda.is_available() and args.device != "cpu"
    target = 2.0 if on_gpu else 30.0
    end_to_end = t_load + t_review
    result = {
        "device": torch.cuda.get_device_name(0) if on_gpu else "cpu",
        "threads": torch.get_num_threads(),
        "files": args.files,
        "added_lines": args.lines,
        "file_lines_total": sum(t.count("\n") for t in files.values()),
        "lines_scored": report.summary.lines_scored,
        "naive_lines_scored": sum(len(fs.lines) for fs in naive),
        "load_s": round(t_load, 3),
        "review_s": round(t_review, 3),
        "end_to_end_s": round(end_to_end, 3),
        "naive_s": round(t_naive, 3),
        "naive_over_targeted": round(t_naive / max(t_review, 1e-9), 2),
        "target_s": target,
        "met": end_to_end <= target,
        "model": model_name,
        "bundle": bundle_name,
    }
    print(json.dumps(result, indent=2))
    return 0 if result["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
