"""Can int8 make the CPU review faster? The linear layers of one Qwen2.5-Coder-0.5B block (84 % of a
review's time is `linear`), timed on this CPU in fp32 (the naive way), in PyTorch dynamic int8
(`--quantize int8`), in PyTorch bfloat16 where the CPU multiplies it in hardware (what the review
computes in there: `review_dtype`), and, where `onnxruntime` is installed, in ONNX Runtime fp32 and
dynamic int8.

    python bench/int8.py [--tokens 2048] [--reps 5] [--out bench/results/int8.json]

Prints, per runtime, the block's linear time per 1,000 tokens, its speed against PyTorch fp32, and the
fp32 matmul reference of the same run (`bench/review.py`'s). Not a test: a shared machine is noisy.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from review import matmul_gflops  # noqa: E402

# (in, out) of every nn.Linear of one block: q, k, v, o, gate, up, down
BLOCK = [(896, 896), (896, 128), (896, 128), (896, 896), (896, 4864), (896, 4864), (4864, 896)]


def best_seconds(fn, reps: int) -> float:
    fn()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def torch_runtimes(x: dict[int, torch.Tensor], reps: int) -> dict[str, float]:
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # torch.ao's migration notice
    from risk_core.model_loading import fast_cpu_bf16

    linears = [torch.nn.Linear(i, o) for i, o in BLOCK]
    quantized = [torch.ao.quantization.quantize_dynamic(lin, {torch.nn.Linear}, dtype=torch.qint8) for lin in linears]
    with torch.no_grad():
        times = {
            "torch fp32": sum(best_seconds(lambda m=m, i=i: m(x[i]), reps) for m, (i, _) in zip(linears, BLOCK)),
            "torch int8 (dynamic)": sum(
                best_seconds(lambda m=m, i=i: m(x[i]), reps) for m, (i, _) in zip(quantized, BLOCK)
            ),
        }
        if fast_cpu_bf16():  # emulated elsewhere: orders of magnitude slower, not worth timing
            bf16 = [torch.nn.Linear(i, o).to(torch.bfloat16) for i, o in BLOCK]
            xb = {i: t.to(torch.bfloat16) for i, t in x.items()}
            times["torch bfloat16"] = sum(
                best_seconds(lambda m=m, i=i: m(xb[i]), reps) for m, (i, _) in zip(bf16, BLOCK)
            )
        return times


def onnx_runtimes(x: dict[int, torch.Tensor], reps: int) -> dict[str, float]:
    """ONNX Runtime, fp32 and dynamic int8 (weights int8, activations quantized per call): {} without it."""
    try:
        import onnx
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError:
        return {}
    logging.getLogger().setLevel(logging.ERROR)  # its "consider pre-processing" notice, once per model
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    total = {"onnxruntime fp32": 0.0, "onnxruntime int8 (dynamic)": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        for n, (i, o) in enumerate(BLOCK):
            w = numpy_helper.from_array((np.random.randn(i, o) * 0.02).astype(np.float32), "w")
            graph = helper.make_graph(
                [helper.make_node("MatMul", ["x", "w"], ["y"])],
                "linear",
                [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, i])],
                [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, o])],
                [w],
            )
            fp32, int8 = f"{tmp}/{n}.onnx", f"{tmp}/{n}-int8.onnx"
            onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), fp32)
            quantize_dynamic(fp32, int8, weight_type=QuantType.QInt8)
            feed = {"x": x[i].numpy()}
            for name, path in (("onnxruntime fp32", fp32), ("onnxruntime int8 (dynamic)", int8)):
                sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
                total[name] += best_seconds(lambda s=sess, f=feed: s.run(None, f), reps)
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--tokens", type=int, default=2048, help="rows of each matmul (a batch of windows)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", default="bench/results/int8.json")
    args = ap.parse_args()
    torch.manual_seed(0)
    x = {i: torch.randn(args.tokens, i) for i in {i for i, _ in BLOCK}}
    reference = matmul_gflops()
    times = torch_runtimes(x, args.reps) | onnx_runtimes(x, args.reps)
    flops = 2 * args.tokens * sum(i * o for i, o in BLOCK)
    naive = times["torch fp32"]
    flags = Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").exists() else []
    result = {
        "machine": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "int8_dot_product_instructions": sorted({f for f in flags if "vnni" in f or f.startswith("amx")}),
        "matmul_gflops": round(reference, 1),
        "tokens": args.tokens,
        "runtimes": {
            name: {
                "ms_per_1000_tokens": round(1000 * t / args.tokens * 1000, 2),
                "gflops_equivalent": round(flops / t / 1e9, 1),
                "speed_vs_torch_fp32": round(naive / t, 2),
                "fraction_of_matmul_reference": round(flops / t / 1e9 / reference, 2),
            }
            for name, t in times.items()
        },
    }
    if "onnxruntime fp32" not in times:
        result["note"] = "onnxruntime is not installed: PyTorch only"
    print(json.dumps(result, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
