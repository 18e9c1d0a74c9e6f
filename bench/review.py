"""Benchmark: end-to-end dry-run `pttrust review` of a generated diff with the embedded model, against
the naive way (score every line of every touched file) and this machine's fp32 matmul throughput,
measured in the same run.

    python bench/review.py --bundle DIR [--device cpu] [--quantize int8] [--files 10] [--lines 300]
                           [--engine auto|torch|transformers]
    python bench/review.py --bundle DIR --sweep files|lines|size [--out bench/results] [--naive-max-lines N]
    python bench/review.py --plot bench/results         # sweep JSONs -> bench/results/sweep.png

Targets (issue 13, 2-core CPU): 300 added lines / 10 files <= 15 s end to end with the cold start
(imports + model + bundle) included; targeted >= 2x naive; a 1-line change in a 20,000-line file
<= 5 s after load; peak memory <= 2.5 GB. Prints one JSON object (a sweep also writes
``sweep-<kind>.json``). Not a test: timings on a shared machine are noisy. The model must be prepared
first (`pttrust models prepare`); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import resource
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
SWEEPS = ("files", "lines", "size")


def _line(k: int, i: int) -> str:
    return SNIPPETS[k % len(SNIPPETS)].format(f=f"fn_{i}_{k}", C=f"Thing{i}_{k}")


def make_change(n_files: int, n_added: int, context_factor: int, seed: int = 0):
    """Files (new side) and a unified diff adding n_added lines spread over n_files files, each file
    ``context_factor`` times longer than its added part (at least one line of context)."""
    rng = random.Random(seed)
    files, diff = {}, []
    per_file = [n_added // n_files + (1 if i < n_added % n_files else 0) for i in range(n_files)]
    for i, n in enumerate(per_file):
        before = [_line(k, i) for k in range(max(n * context_factor, 1))]
        at = rng.randrange(len(before) + 1)
        added = [_line(k + 8, i) for k in range(n)]  # from a code line: a 1-line change is never blank
        _add_file(files, diff, f"pkg/mod_{i}.py", before, at, added)
    return files, "\n".join(diff) + "\n"


def make_big_change(n_lines: int):
    """One file of ``n_lines`` lines with one line added near its end (in its last function)."""
    files, diff = {}, []
    before = [_line(k, 0) for k in range(n_lines - 1)]
    at = max(len(before) - 3, 0)
    _add_file(files, diff, "pkg/big.py", before, at, ["        total -= 1"])
    return files, "\n".join(diff) + "\n"


def _add_file(files: dict, diff: list, path: str, before: list[str], at: int, added: list[str]) -> None:
    files[path] = "\n".join(before[:at] + added + before[at:]) + "\n"
    diff += [f"diff --git a/{path} b/{path}", f"--- a/{path}", f"+++ b/{path}"]
    diff += [f"@@ -{at},0 +{at + 1},{len(added)} @@"] + [f"+{t}" for t in added]


def matmul_gflops(seconds: float = 2.0, dtype: str = "float32") -> float:
    """Best GFLOP/s of a [2048, 896] x [896, 4864] matmul (the MLP's shape) in ``dtype`` on this
    machine, with torch's threads: the hardware reference every encoding speed is compared with."""
    import torch

    a, b = torch.randn(2048, 896).to(getattr(torch, dtype)), torch.randn(896, 4864).to(getattr(torch, dtype))
    flops, best, end = 2 * 2048 * 896 * 4864, 0.0, time.perf_counter() + seconds
    _ = a @ b
    for rep in range(10**6):
        if rep >= 3 and time.perf_counter() > end:
            break
        t = time.perf_counter()
        _ = a @ b
        best = max(best, flops / (time.perf_counter() - t) / 1e9)
    return best


def flops_per_token(loaded, layer: int) -> float:
    """2 x the weights of the blocks up to ``layer`` (attention scores, a few % at these lengths, left out)."""
    cfg = loaded.model.config
    d, inter = cfg.hidden_size, cfg.intermediate_size
    kv = d * cfg.num_key_value_heads // cfg.num_attention_heads
    per_block = 2 * d * d + 2 * d * kv + 3 * d * inter
    return 2.0 * per_block * layer


class ModelMeter:
    """Tokens (padding included) that go through the model, counted at the embedding lookup, and the
    seconds spent in the model's forward passes, from the embedding lookup to the output of the last
    block built (the pass stops there): what sets encoding against the matmul reference apart from
    the rest of a review (tokenizing, the probe, the reasons, rendering)."""

    def __init__(self, loaded):
        from risk_core.encode import decoder_layers

        self.n, self.seconds, self._start = 0, 0.0, 0.0
        loaded.model.get_input_embeddings().register_forward_pre_hook(self._enter)
        decoder_layers(loaded.model)[-1].register_forward_hook(self._leave)

    def _enter(self, module, args):
        self.n += args[0].numel()
        self._start = time.perf_counter()

    def _leave(self, module, args, output):
        self.seconds += time.perf_counter() - self._start

    def take(self) -> tuple[int, float]:
        """Tokens and forward seconds since the last take."""
        taken = self.n, self.seconds
        self.n, self.seconds = 0, 0.0
        return taken


def write_tree(tmp: Path, files: dict) -> None:
    for path, text in files.items():
        (tmp / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp / path).write_text(text)


def time_review(scorer, files: dict, diff: str) -> tuple[float, int]:
    """One dry-run review rendered like the CLI (comments + summary + SARIF): seconds, lines scored."""
    from bot.config import ReviewConfig
    from bot.context import working_tree_reader
    from bot.formats import format_report
    from bot.render import make_environment, render_comment, render_summary
    from bot.review import review

    with tempfile.TemporaryDirectory() as tmp:
        write_tree(Path(tmp), files)
        t = time.perf_counter()
        report = review(diff, working_tree_reader(tmp), scorer, ReviewConfig(threshold=0.5))
        env = make_environment()
        for f in report.findings:
            render_comment(env, f, report)
        render_summary(env, report)
        format_report(report, "sarif", env)
        return time.perf_counter() - t, report.summary.lines_scored


def time_naive(scorer, files: dict) -> tuple[float, int]:
    """Every line of every touched file."""
    from risk_core.score import FileToScore

    t = time.perf_counter()
    naive = scorer.score([FileToScore(p, text, None) for p, text in files.items()])
    return time.perf_counter() - t, sum(len(fs.lines) for fs in naive)


def measure_case(scorer, counter, flop_tok, gflops_hw, files, diff, naive_max_lines: int) -> dict:
    total_lines = sum(t.count("\n") for t in files.values())
    review_s, scored = time_review(scorer, files, diff)
    tokens, model_s = counter.take()
    row = {
        "files": len(files),
        "added_lines": diff.count("\n+") - diff.count("\n+++"),
        "file_lines_total": total_lines,
        "lines_scored": scored,
        "review_s": round(review_s, 3),
        "tokens_encoded": tokens,
        "encode_gflops": round(tokens * flop_tok / review_s / 1e9, 1),
        "fraction_of_matmul": round(tokens * flop_tok / review_s / 1e9 / gflops_hw, 3),
        "model_s": round(model_s, 3),  # the forward passes alone
        "model_fraction_of_matmul": round(tokens * flop_tok / max(model_s, 1e-9) / 1e9 / gflops_hw, 3),
        "naive_s": None,
        "naive_over_targeted": None,
    }
    if total_lines <= naive_max_lines:
        naive_s, naive_scored = time_naive(scorer, files)
        counter.take()
        row.update(
            naive_s=round(naive_s, 3),
            naive_lines_scored=naive_scored,
            naive_over_targeted=round(naive_s / max(review_s, 1e-9), 2),
        )
    return row


def sweep_cases(kind: str, args) -> list[tuple[dict, str]]:
    if kind == "files":  # a few lines in each of many files
        return [make_change(n, max(n * args.lines_per_file, 10), args.context_factor) for n in args.files_sweep]
    if kind == "lines":
        return [make_change(args.files, n, args.context_factor) for n in args.lines_sweep]
    return [make_big_change(n) for n in args.size_sweep]


def machine() -> dict:
    import torch

    from risk_core.model_loading import fast_cpu_bf16

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    return {
        "cpu": cpu,
        "threads": torch.get_num_threads(),
        "bfloat16_in_hardware": fast_cpu_bf16(),  # what --dtype auto reads on CPU
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def plot(results_dir: Path) -> Path:
    """The sweep JSONs of ``results_dir`` -> one PNG of review time (and naive time) per sweep."""
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("error: --plot needs matplotlib: pip install -e '.[bench]'") from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    docs = {
        k: json.loads((results_dir / f"sweep-{k}.json").read_text())
        for k in SWEEPS
        if (results_dir / f"sweep-{k}.json").exists()
    }
    if not docs:
        raise SystemExit(f"error: no sweep-*.json in {results_dir}")
    fig, axes = plt.subplots(1, len(docs), figsize=(5 * len(docs), 4), squeeze=False)
    x_of = {
        "files": ("files", "files touched (3 added lines each)"),
        "lines": ("added_lines", "added lines (10 files)"),
        "size": ("file_lines_total", "lines in the file (1-line change)"),
    }
    for ax, (kind, doc) in zip(axes[0], docs.items()):
        key, label = x_of[kind]
        rows = doc["rows"]
        xs = [r[key] for r in rows]
        ax.plot(xs, [r["review_s"] for r in rows], "o-", label="targeted review")
        naive = [(r[key], r["naive_s"]) for r in rows if r["naive_s"] is not None]
        if naive:
            ax.plot(*zip(*naive), "s--", label="naive (every line)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("seconds (model loaded)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    first = next(iter(docs.values()))
    m = first["machine"]
    fig.suptitle(
        f"pttrust review, {m['cpu']}, {m['threads']} threads, {first.get('dtype', 'float32')}, "
        f"matmul {first['matmul_gflops']:.0f} GFLOP/s"
    )
    fig.tight_layout()
    out = results_dir / "sweep.png"
    fig.savefig(out, dpi=110)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--bundle", default=str(ROOT / "risk_core" / "weights" / "qwen2.5-coder-0.5b"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quantize", default="auto", choices=["auto", "nf4", "int8", "none"])
    ap.add_argument(
        "--dtype", default="auto", choices=["auto", "float32", "bfloat16"], help="as `pttrust review --dtype`"
    )
    ap.add_argument("--engine", default="auto", choices=["auto", "torch", "transformers"], help="see load_model")
    ap.add_argument("--files", type=int, default=10)
    ap.add_argument("--lines", type=int, default=300)
    ap.add_argument("--context-factor", type=int, default=4, help="file length / added lines")
    ap.add_argument("--sweep", choices=SWEEPS, help="time a series of changes instead of one")
    ap.add_argument("--files-sweep", type=lambda s: [int(x) for x in s.split(",")], default=[1, 10, 50, 200])
    ap.add_argument("--lines-per-file", type=int, default=3, help="added lines per file in the files sweep")
    ap.add_argument("--lines-sweep", type=lambda s: [int(x) for x in s.split(",")], default=[10, 100, 300, 1000, 3000])
    ap.add_argument("--size-sweep", type=lambda s: [int(x) for x in s.split(",")], default=[100, 1000, 5000, 20000])
    ap.add_argument("--naive-max-lines", type=int, default=10**9, help="skip the naive way above this many file lines")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="directory of the JSON results")
    ap.add_argument("--plot", type=Path, metavar="DIR", help="only draw the PNG from DIR's sweep JSONs")
    args = ap.parse_args()
    if args.plot:
        print(plot(args.plot))
        return 0

    # Cold start: the imports of the model stack, then model + bundle from the prepared cache. The
    # torch engine never imports transformers; the transformers engine imports it inside the load.
    t0 = time.perf_counter()
    import torch  # noqa: F401 - timed here: part of every cold start

    from bot.run import load_scorer
    from risk_core.encode import decoder_layers

    t_import = time.perf_counter() - t0
    t1 = time.perf_counter()
    scorer, model_name, bundle_name = load_scorer(
        args.model, args.bundle, args.device, quantize=args.quantize, engine=args.engine, dtype=args.dtype
    )
    t_load = time.perf_counter() - t1
    loaded = scorer.loaded
    counter = ModelMeter(loaded)
    flop_tok = flops_per_token(loaded, scorer.bundle.cfg.layer)
    dtype = loaded.dtype  # the reference is measured in the dtype the blocks compute in
    gflops_hw = matmul_gflops(dtype=dtype)
    head = {
        "machine": machine(),
        "device": args.device,
        "quantize": args.quantize,
        "model": model_name,
        "bundle": bundle_name,
        "reading": scorer.bundle.cfg.reading,  # echo runs every window twice: tokens_encoded counts both
        "engine": loaded.engine,
        "transformers_imported": "transformers" in sys.modules,
        "blocks_built": len(decoder_layers(loaded.model)),
        "import_s": round(t_import, 3),
        "load_s": round(t_load, 3),
        "cold_start_s": round(t_import + t_load, 3),
        "dtype": dtype,
        "matmul_gflops": round(gflops_hw, 1),
        "gflop_per_token": round(flop_tok / 1e9, 3),
    }
    if args.sweep:
        rows = []
        for files, diff in sweep_cases(args.sweep, args):
            rows.append(measure_case(scorer, counter, flop_tok, gflops_hw, files, diff, args.naive_max_lines))
            print(json.dumps(rows[-1]), file=sys.stderr)
        doc = {**head, "sweep": args.sweep, "rows": rows, "peak_rss_gb": _peak_rss_gb()}
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"sweep-{args.sweep}.json").write_text(json.dumps(doc, indent=2) + "\n")
        print(json.dumps(doc, indent=2))
        return 0

    files, diff = make_change(args.files, args.lines, args.context_factor)
    row = measure_case(scorer, counter, flop_tok, gflops_hw, files, diff, args.naive_max_lines)
    end_to_end = head["cold_start_s"] + row["review_s"]
    on_gpu = loaded.device.type == "cuda"
    target = 2.0 if on_gpu else 15.0
    result = {
        **head,
        **row,
        "end_to_end_s": round(end_to_end, 3),
        "target_s": target,
        "met": end_to_end <= target,
        "peak_rss_gb": _peak_rss_gb(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"review-{args.lines}x{args.files}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0 if result["met"] else 1


def _peak_rss_gb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)


if __name__ == "__main__":
    sys.exit(main())
