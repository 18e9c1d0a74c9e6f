"""Speed of `encode_lines` (layer 12 of the 0.5B) against the naive way, on the present device.

    python bench/encode.py [--reps 2] [--gguf PATH] [--skip-gguf]

Prints tokens/s and peak memory of `encode_lines` vs `model(ids, output_hidden_states=True)` (all
layers, logits included) for one 2,048-token file and for a batch of 8 files, with the speed ratio
(target >= 1.8x); then the cold-start time of `load_model` from the prepared cache (target < 5 s on
CPU) vs loading the GGUF directly. Not a test: numbers on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

import torch

from risk_core import model_loading, models
from risk_core.encode import EncodeConfig, encode_lines

LAYER = 12


class PeakMemory:
    """Peak extra memory during a block: CUDA allocator stats, or sampled RSS on CPU."""

    def __init__(self, device: torch.device):
        self.device, self.peak = device, 0

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            self.base, self.stop = self._rss(), threading.Event()
            self.thread = threading.Thread(target=self._sample, daemon=True)
            self.thread.start()
        return self

    def _sample(self):
        while not self.stop.wait(0.005):
            self.peak = max(self.peak, self._rss() - self.base)

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self.base
        else:
            self.stop.set()
            self.thread.join()
            self.peak = max(self.peak, self._rss() - self.base)


def corpus_texts(tokenizer, n_files: int, tokens_per_file: int) -> list[str]:
    """Slices of this repository's own Python sources, each exactly ``tokens_per_file`` tokens."""
    root = Path(__file__).resolve().parents[1]
    text = "\n".join(p.read_text() for p in sorted(root.glob("*/**/*.py")) if ".venv" not in p.parts)
    ids = tokenizer(text, add_special_tokens=False).input_ids
    while len(ids) < n_files * tokens_per_file:
        ids = ids + ids
    return [tokenizer.decode(ids[i * tokens_per_file : (i + 1) * tokens_per_file]) for i in range(n_files)]


@torch.inference_mode()
def naive(loaded, texts):
    for text in texts:
        ids = loaded.tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids.to(loaded.device)
        loaded.model(ids, output_hidden_states=True).hidden_states[LAYER].float().cpu()


def measure(fns, device, reps):
    """Best time and peak memory of each function; runs are interleaved so that load from other
    processes on a shared machine drifts over all of them alike."""
    best, peak = [float("inf")] * len(fns), [0] * len(fns)
    for _ in range(reps):
        for i, fn in enumerate(fns):
            with PeakMemory(device) as mem:
                t = time.perf_counter()
                fn()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                best[i] = min(best[i], time.perf_counter() - t)
            peak[i] = max(peak[i], mem.peak)
    return list(zip(best, peak))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--gguf", type=Path, help="assembled GGUF (default: assemble from the part packages)")
    ap.add_argument("--skip-gguf", action="store_true")
    args = ap.parse_args()

    models.quiet_transformers()
    name = models.DEFAULT_MODEL
    models.prepare(name)
    t = time.perf_counter()
    loaded = model_loading.load_model(name)
    cold = time.perf_counter() - t
    dev = loaded.device
    where = torch.cuda.get_device_name() if dev.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"device: {dev} ({where})")

    cfg = EncodeConfig(layer=LAYER, window=2048, batch_size=8)
    encode_lines(loaded, ["def warm_up():\n    pass\n"], cfg)
    naive(loaded, ["def warm_up():\n    pass\n"])
    cases = {
        "one 2,048-token file": corpus_texts(loaded.tokenizer, 1, 2048),
        "8 files x 512 tokens": corpus_texts(loaded.tokenizer, 8, 512),
    }
    for label, texts in cases.items():
        n_tok = sum(len(loaded.tokenizer(t, add_special_tokens=False).input_ids) for t in texts)
        (t_enc, m_enc), (t_nai, m_nai) = measure(
            [lambda texts=texts: encode_lines(loaded, texts, cfg), lambda texts=texts: naive(loaded, texts)],
            dev,
            args.reps,
        )
        print(
            f"{label:22s} encode_lines {n_tok / t_enc:8.0f} tok/s peak {m_enc / 2**20:7.0f} MiB | "
            f"naive {n_tok / t_nai:8.0f} tok/s peak {m_nai / 2**20:7.0f} MiB | speed-up {t_nai / t_enc:.2f}x"
        )

    print(f"cold start from the prepared cache: {cold:.1f} s")
    if not args.skip_gguf:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        with tempfile.TemporaryDirectory() as tmp:
            gguf = args.gguf
            if gguf is None:
                gguf = Path(tmp) / "model.gguf"
                spec = models.REGISTRY[name]
                models._assemble(spec, models.installed_part_files(spec), gguf, None)
            t = time.perf_counter()
            AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
            print(f"load from the GGUF:                 {time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    main()
