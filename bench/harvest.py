"""Harvest throughput against the bare truncated forward, in the same run.

    python bench/harvest.py --model /tmp/qwen05b-hf --layer 12 --tokens 16384 [--corpus DIR]

The bare forward runs the model to the layer on the same chunks (already tokenized, nothing stored);
the harvest adds tokenization, line mapping, the fp16 copy to the host and shard writes. Prints both
in tokens/s and their ratio (target >= 0.8 on a GPU: the pipeline should stay forward-bound).
"""

from __future__ import annotations

import argparse
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from risk_core import harvest as hv  # noqa: E402
from risk_core.corpus import Corpus, CorpusConfig, build_corpus  # noqa: E402
from risk_core.model_loading import load_model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--layer", type=int, default=12)
    ap.add_argument("--tokens", type=int, default=16384)
    ap.add_argument("--ctx-len", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--corpus", default=None, help="corpus dir (default: build one from the stdlib's email/json)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--quantize", default="auto")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-harvest-"))
    corpus_dir = args.corpus
    if corpus_dir is None:
        stdlib = Path(sysconfig.get_paths()["stdlib"])
        corpus_dir = tmp / "corpus"
        build_corpus(
            [str(stdlib / "email"), str(stdlib / "json"), str(stdlib / "asyncio")],
            corpus_dir,
            CorpusConfig(validation_fraction=0.0, reserved_fraction=0.0),
        )
    loaded = load_model(args.model, device=args.device, quantize=args.quantize)
    cfg = hv.HarvestConfig(
        layer=args.layer,
        tokens=args.tokens,
        val_tokens=0,
        ctx_len=args.ctx_len,
        batch_size=args.batch_size,
        shard_tokens=max(args.tokens // 4, 1),
    )
    sync = torch.cuda.synchronize if loaded.device.type == "cuda" else (lambda: None)

    # The same chunks, tokenized up front, for the bare forward.
    chunks = []
    for ids, _, _ in hv.token_stream(Corpus(corpus_dir), "train", loaded.tokenizer, cfg):
        chunks.append(ids)
        if len(chunks) * cfg.acts_per_chunk >= args.tokens:
            break
    hv.layer_states(loaded, torch.stack(chunks[:1]), args.layer)  # warm-up
    sync()
    t0 = time.perf_counter()
    for b in range(0, len(chunks), cfg.batch_size):
        h = hv.layer_states(loaded, torch.stack(chunks[b : b + cfg.batch_size]), args.layer)
    sync()
    bare_s = time.perf_counter() - t0
    n_tok = len(chunks) * cfg.acts_per_chunk

    t0 = time.perf_counter()
    doc = hv.harvest(corpus_dir, args.model, tmp / "acts", cfg, loaded=loaded)
    sync()
    harvest_s = time.perf_counter() - t0
    n_h = doc["n_tokens"]["train"]

    bare, full = n_tok / bare_s, n_h / harvest_s
    print(
        f"device {loaded.device}, layer {args.layer}/{loaded.num_layers}, d={loaded.d_model}, "
        f"ctx {args.ctx_len} x batch {args.batch_size}, {n_h:,} tokens"
    )
    print(f"bare truncated forward: {bare:,.0f} tokens/s")
    print(
        f"harvest pipeline:       {full:,.0f} tokens/s (includes model fingerprint hashing: "
        f"{'yes' if loaded.sha256 is None else 'no'})"
    )
    print(f"ratio harvest/bare:     {full / bare:.2f}")
    del h


if __name__ == "__main__":
    main()
