"""Memory of an encode that reads the model's likelihood (`pttrust eval`, `realbugs-features --surprise`).

    python bench/likelihood_memory.py [--files 48] [--dtype float32|bfloat16] [--out bench/results/X.json]

Encodes the same files (slices of this repository's own sources, 128 to 2,048 tokens, as real functions
vary) with per-token NLL, in two fresh processes: as the project does it, and the naive way (the freed
logits buffers left to the C allocator, `release_freed_memory` a no-op). Prints the resident memory after
every 8 files and at the end, the ratio naive / project, and the hardware references measured in the same
run: the model's weights in memory and the largest logits buffer a pass allocates. Target: the project's
resident memory stays within a few logits buffers of the weights, whatever the number of files. Not a test.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from risk_core import model_loading, models  # noqa: E402
from risk_core.encode import EncodeConfig, encode_tokens  # noqa: E402

SIZES = (2048, 128, 1024, 384, 1536, 256, 768, 512)  # tokens; a new size each file, as in a real encode


def rss_gb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1e6


def source_slices(tokenizer, n_files: int) -> list[str]:
    """``n_files`` slices of this repository's own Python sources, their lengths cycling through SIZES."""
    text = "\n".join(p.read_text() for p in sorted(ROOT.glob("*/**/*.py")) if ".venv" not in p.parts)
    ids = tokenizer(text, add_special_tokens=False).input_ids
    out, at = [], 0
    for i in range(n_files):
        n = SIZES[i % len(SIZES)]
        if at + n > len(ids):
            at = 0
        out.append(tokenizer.decode(ids[at : at + n]))
        at += n
    return out


def child(naive: bool, n_files: int, dtype: str) -> None:
    """One encode in this process; prints a JSON line of its memory."""
    import risk_core.encode as encode

    if naive:
        encode.release_freed_memory = lambda: None
    models.quiet_transformers()
    loaded = model_loading.load_model(models.DEFAULT_MODEL, device="cpu", quantize="none", dtype=dtype)
    weights_gb = sum(p.numel() * p.element_size() for p in loaded.model.parameters()) / 1e9
    texts = source_slices(loaded.tokenizer, n_files)
    cfg = EncodeConfig(layer=12, surprise=True)
    loaded_gb, after = rss_gb(), []
    for i in range(0, n_files, 8):  # as build_cache calls it, a chunk of files at a time
        encode_tokens(loaded, texts[i : i + 8], cfg)
        after.append(round(rss_gb(), 3))
    head = loaded.model.get_output_embeddings()  # the likelihood is read with transformers' engine, head included
    assert isinstance(head, torch.nn.Linear), f"an LM head, not {type(head).__name__}"
    vocab = head.out_features
    # _surprise: 256 positions of up to batch_size windows at a time, log-probabilities and their exp, float32
    logits_gb = cfg.batch_size * 256 * vocab * 4 * 2 / 1e9
    print(json.dumps({"weights_gb": weights_gb, "loaded_gb": loaded_gb, "after_each_8": after, "logits_gb": logits_gb}))


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--files", type=int, default=48, help="how many source slices each process encodes (default 48)")
    ap.add_argument(
        "--dtype", choices=("float32", "bfloat16"), default="float32", help="the model's dtype (default float32)"
    )
    ap.add_argument("--out", type=Path, help="also write the figures as JSON here")
    ap.add_argument("--child", choices=("project", "naive"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child == "naive", args.files, args.dtype)
        return
    models.prepare(models.DEFAULT_MODEL)
    runs = {}
    for way in ("project", "naive"):
        cmd = [sys.executable, __file__, "--child", way, "--files", str(args.files), "--dtype", args.dtype]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        runs[way] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{way:8s} resident after each 8 files (GB): {runs[way]['after_each_8']}", flush=True)
    ref = runs["project"]
    end = {way: r["after_each_8"][-1] for way, r in runs.items()}
    print(
        f"{args.files} files, {args.dtype}, {torch.get_num_threads()} threads: resident at the end "
        f"{end['project']:.2f} GB (project) against {end['naive']:.2f} GB (naive): {end['naive'] / end['project']:.1f}x"
    )
    print(
        f"hardware reference: weights {ref['weights_gb']:.2f} GB, process after loading {ref['loaded_gb']:.2f} GB, "
        f"largest logits buffers of a pass {ref['logits_gb']:.2f} GB"
    )
    if args.out:
        args.out.write_text(json.dumps({"files": args.files, "dtype": args.dtype, "runs": runs}, indent=2) + "\n")


if __name__ == "__main__":
    main()
