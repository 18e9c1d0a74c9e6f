"""Benchmark: HumanEval completion generation for Stage 2 data (`pttrust data humaneval`), batched with
stop sequences, against the naive way (one problem at a time, run to --max-new-tokens, cut afterwards)
in the same run.

    python bench/humaneval.py [--model NAME] [--device auto] [--problems 8] [--batch-size 8]

Greedy only, so that both ways should produce the same completions; the agreement is printed (left
padding can flip a near-tie of the argmax, so it may be a little under 100%). Prints one JSON object.
The model must be prepared first (`pttrust models prepare`); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def naive(loaded, prompts: list[str], max_new_tokens: int) -> list[str]:
    import torch

    from risk_core.data.humaneval import truncate_completion

    tok = loaded.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    out = []
    with torch.no_grad():
        for prompt in prompts:
            ids = tok(prompt, return_tensors="pt").to(loaded.device)
            g = loaded.model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad)
            out.append(truncate_completion(tok.decode(g[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--problems", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=384)
    args = ap.parse_args()

    from risk_core.data.humaneval import load_problems, sample_completions
    from risk_core.model_loading import load_model
    from risk_core.models import DEFAULT_MODEL, quiet_transformers

    quiet_transformers()
    loaded = load_model(args.model or DEFAULT_MODEL, device=args.device)
    prompts = [p["prompt"] for p in load_problems(args.problems)]

    t0 = time.perf_counter()
    batched = []
    for i in range(0, len(prompts), args.batch_size):
        chunk = prompts[i : i + args.batch_size]
        batched += [per[0][1] for per in sample_completions(loaded, chunk, 1, 1.0, args.max_new_tokens, 0)]
    t_batched = time.perf_counter() - t0

    t0 = time.perf_counter()
    one_by_one = naive(loaded, prompts, args.max_new_tokens)
    t_naive = time.perf_counter() - t0

    same = sum(a == b for a, b in zip(batched, one_by_one))
    print(
        json.dumps(
            {
                "device": str(loaded.device),
                "problems": len(prompts),
                "batch_size": args.batch_size,
                "max_new_tokens": args.max_new_tokens,
                "batched_s_per_problem": round(t_batched / len(prompts), 2),
                "naive_s_per_problem": round(t_naive / len(prompts), 2),
                "speedup": round(t_naive / t_batched, 2),
                "same_completion": f"{same}/{len(prompts)}",
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
