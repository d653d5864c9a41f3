"""Rebuild the vendored kernel-level calibration subset (moejax/data/reference/kernels/*.csv) from its sources.

A maintainer's tool, not part of the package: it needs ``pyarrow`` (AIConfigurator ships its per-op
tables as Parquet) and local git mirrors of the source repositories, and it is never run by the tests.

    python sweeps/kernels/extract.py --aic PATH/aiconfigurator --deepgemm PATH/DeepGEMM --deepep PATH/DeepEP

Each mirror is read with ``git show COMMIT:PATH`` at the pinned commits below, so the output is the same
whatever the mirrors' checked-out state. The subset is a fixed grid of shapes (``*_GRID`` below); every
row is a measured number copied from its table (AIConfigurator latencies in ms are converted to s;
DeepGEMM's README TFLOPS are converted to time as 2·M·N·K·groups / rate).
"""

from __future__ import annotations

import argparse
import csv
import io
import re
import subprocess
from pathlib import Path

AIC_COMMIT = "095f58a51c4ca8e61b66ec108d86f223f8d559ce"
AIC_DATA = "aic-core/src/aiconfigurator_core/systems/data"
DEEPGEMM_COMMIT = "55ab91f"  # README "Update performance", 2025-03-25: the last README with per-shape H800 tables
DEEPEP_COMMIT = "2be0d4f"  # README of 2025-10-21 with the H800 normal and low-latency tables
SYSTEMS = {"h100_sxm": "h100-sxm", "h200_sxm": "h200", "b200_sxm": "b200", "gb200": "gb200-nvl72"}
TRTLLM = "1.3.0rc20"
NCCL = {"h100_sxm": "2.29.2", "h200_sxm": "2.29.2", "b200_sxm": "2.29.2", "gb200": "2.29.2"}
DEEPEP_VERSION = "0.5.12"
RANKS_PER_NODE = {"h100_sxm": 8, "h200_sxm": 8, "b200_sxm": 8, "gb200": 4}  # collect_deepep_ll.py: "4 on GB200, 8 on ..."
DTYPES = {"bfloat16": "bf16", "fp8": "fp8", "fp8_block": "fp8_block", "nvfp4": "nvfp4", "half": "fp16", "int8": "int8"}

GEMM_NK = [(4096, 4096), (7168, 2048), (2048, 7168), (14336, 4096), (1024, 8192), (28672, 8192)]
GEMM_M = [1, 16, 64, 256, 1024, 4096, 16384]
MOE_SHAPES = [(7168, 2048, 8, 256), (4096, 1536, 8, 128), (4096, 14336, 2, 8)]  # hidden, inter, topk, experts
MOE_PARALLEL = [(1, 8), (1, 32), (8, 1)]  # (moe_tp, moe_ep)
MOE_TOKENS = [1, 8, 64, 256, 1024, 4096, 16384]
GQA_HEADS = [(64, 8, 128), (32, 8, 128), (8, 1, 128), (16, 2, 128)]  # local q heads, kv heads, head dim
DECODE_BATCH = [1, 8, 64, 256]
DECODE_STEP = [1023, 4095, 16383, 65535]  # kv length = isl (1) + step
PREFILL_BATCH = [1, 4]
PREFILL_ISL = [512, 2048, 8192, 16384]
MLA_HEADS = [128, 16]
QUANT_M = [1, 16, 256, 4096, 32768]
QUANT_K = [2048, 7168, 16384]


def git_show(repo: Path, commit: str, path: str) -> bytes:
    """The bytes of ``path`` at ``commit`` in the git directory ``repo``."""
    return subprocess.run(["git", "-C", str(repo), "show", f"{commit}:{path}"], check=True, capture_output=True).stdout


def parquet(repo: Path, path: str):
    """An AIConfigurator Parquet table as a pandas DataFrame (pyarrow needed)."""
    import pyarrow.parquet as pq

    return pq.read_table(io.BytesIO(git_show(repo, AIC_COMMIT, path))).to_pandas()


def src(path: str) -> str:
    """The source column of an AIConfigurator row."""
    return f"github:ai-dynamo/aiconfigurator@{AIC_COMMIT[:12]}:{path}"


def gemm_rows(aic: Path) -> list[dict]:
    """Dense GEMMs: gemm_perf (TRT-LLM torch flow; Blackwell fp8_block is DeepGEMM), the fixed M × (N, K) grid."""
    rows = []
    for system, hw in SYSTEMS.items():
        path = f"{AIC_DATA}/{system}/gemm/trtllm/{TRTLLM}/gemm_perf.parquet"
        t = parquet(aic, path)
        for (dtype, kernel), g in sorted(t.groupby(["gemm_dtype", "kernel_source"])):
            for n, k in GEMM_NK:
                for m in GEMM_M:
                    hit = g[(g.m == m) & (g.n == n) & (g.k == k)]
                    if len(hit):
                        r = hit.iloc[0]
                        rows.append(
                            dict(
                                kernel_class="gemm",
                                hardware=hw,
                                dtype=DTYPES[dtype],
                                op=f"gemm:{kernel}",
                                groups=1,
                                m=m,
                                n=n,
                                k=k,
                                time_s=f"{r.latency * 1e-3:.6g}",
                                source=src(path),
                            )
                        )
    return rows


def moe_rows(aic: Path) -> list[dict]:
    """The fused MoE module (routing, permute, two grouped GEMMs, activation, finalize): moe_perf, balanced routing."""
    rows = []
    for system, hw in SYSTEMS.items():
        path = f"{AIC_DATA}/{system}/moe/trtllm/{TRTLLM}/moe_perf.parquet"
        t = parquet(aic, path)
        t = t[t.distribution == "balanced"]
        for dtype in ("bfloat16", "fp8_block", "nvfp4"):
            g = t[t.moe_dtype == dtype]
            kernels = sorted(set(g.kernel_source) - {"moe_torch_flow_nongated", "moe_torch_flow_min_latency"})
            if not kernels:
                continue
            g = g[g.kernel_source == kernels[0]]
            for h, inter, topk, e in MOE_SHAPES:
                for tp, ep in MOE_PARALLEL:
                    for tokens in MOE_TOKENS:
                        hit = g[
                            (g.hidden_size == h)
                            & (g.inter_size == inter)
                            & (g.topk == topk)
                            & (g.num_experts == e)
                            & (g.moe_tp_size == tp)
                            & (g.moe_ep_size == ep)
                            & (g.num_tokens == tokens)
                        ]
                        if len(hit):
                            r = hit.iloc[0]
                            rows.append(
                                dict(
                                    kernel_class="grouped_gemm",
                                    hardware=hw,
                                    dtype=DTYPES[dtype],
                                    op=f"moe:{kernels[0]}",
                                    tokens=tokens,
                                    hidden=h,
                                    inter=inter,
                                    topk=topk,
                                    experts=e,
                                    tp=tp,
                                    ep=ep,
                                    gated=1,
                                    time_s=f"{r.latency * 1e-3:.6g}",
                                    source=src(path),
                                )
                            )
    return rows


def attention_rows(aic: Path) -> list[dict]:
    """GQA and MLA attention, decode (generation) and prefill (context), full attention (window 0)."""
    rows = []
    for system, hw in SYSTEMS.items():
        base = f"{AIC_DATA}/{system}"
        gen = f"{base}/attention/trtllm/{TRTLLM}/generation_attention_perf.parquet"
        ctx = f"{base}/attention/trtllm/{TRTLLM}/context_attention_perf.parquet"
        for path, cls, batches, lens in (
            (gen, "attn_decode_gqa", DECODE_BATCH, DECODE_STEP),
            (ctx, "attn_prefill_gqa", PREFILL_BATCH, PREFILL_ISL),
        ):
            t = parquet(aic, path)
            t = t[(t.window_size == 0) & (t.attn_dtype == "bfloat16")]
            for h, kvh, d in GQA_HEADS:
                for kv_dtype in ("bfloat16", "fp8"):
                    for b in batches:
                        for n in lens:
                            col = "step" if cls.startswith("attn_decode") else "isl"
                            hit = t[
                                (t.num_heads == h)
                                & (t.num_key_value_heads == kvh)
                                & (t.head_dim == d)
                                & (t.kv_cache_dtype == kv_dtype)
                                & (t.batch_size == b)
                                & (t[col] == n)
                            ]
                            if len(hit):
                                r = hit.iloc[0]
                                q, kv = (1, r.isl + r.step) if cls.startswith("attn_decode") else (r.isl, r.isl)
                                rows.append(
                                    dict(
                                        kernel_class=cls,
                                        hardware=hw,
                                        dtype="bf16",
                                        kv_dtype=DTYPES[kv_dtype],
                                        batch=b,
                                        q_len=q,
                                        kv_len=kv,
                                        heads=h,
                                        kv_heads=kvh,
                                        head_dim=d,
                                        kv_lora_rank=0,
                                        rope_dim=0,
                                        time_s=f"{r.latency * 1e-3:.6g}",
                                        source=src(path),
                                    )
                                )
        for name, cls, batches, lens in (
            ("generation_mla_perf", "attn_decode_mla", DECODE_BATCH, DECODE_STEP[:3]),
            ("context_mla_perf", "attn_prefill_mla", PREFILL_BATCH, PREFILL_ISL),
        ):
            path = f"{base}/mla/trtllm/{TRTLLM}/{name}.parquet"
            t = parquet(aic, path)
            for h in MLA_HEADS:
                for kv_dtype in ("bfloat16", "fp8"):
                    for b in batches:
                        for n in lens:
                            col = "step" if cls.startswith("attn_decode") else "isl"
                            hit = t[(t.num_heads == h) & (t.kv_cache_dtype == kv_dtype) & (t.batch_size == b) & (t[col] == n)]
                            if len(hit):
                                r = hit.sort_values("tp_size").iloc[0]
                                q, kv = (1, r.isl + r.step) if cls.startswith("attn_decode") else (r.isl, r.isl)
                                # DeepSeek-V3 geometry (collect_mla.py Scenario): kv_lora_rank 512, rope 64, nope 128, v 128
                                rows.append(
                                    dict(
                                        kernel_class=cls,
                                        hardware=hw,
                                        dtype="bf16",
                                        kv_dtype=DTYPES[kv_dtype],
                                        batch=b,
                                        q_len=q,
                                        kv_len=kv,
                                        heads=h,
                                        kv_heads=1,
                                        head_dim=128,
                                        kv_lora_rank=512,
                                        rope_dim=64,
                                        time_s=f"{r.latency * 1e-3:.6g}",
                                        source=src(path),
                                    )
                                )
    return rows


def elementwise_rows(aic: Path) -> list[dict]:
    """Static FP8 per-tensor quantisation (scale_matrix_perf): read m·k BF16, write m·k FP8, a streaming kernel."""
    rows = []
    for system, hw in SYSTEMS.items():
        path = f"{AIC_DATA}/{system}/quantize/trtllm/{TRTLLM}/scale_matrix_perf.parquet"
        t = parquet(aic, path)
        for m in QUANT_M:
            for k in QUANT_K:
                hit = t[(t.m == m) & (t.k == k)]
                if len(hit):
                    rows.append(
                        dict(
                            kernel_class="elementwise",
                            hardware=hw,
                            op="fp8_quantize_static",
                            elements=m * k,
                            bytes_per_element=3,
                            time_s=f"{hit.iloc[0].latency * 1e-3:.6g}",
                            source=src(path),
                        )
                    )
    return rows


def collective_rows(aic: Path) -> list[dict]:
    """NCCL (nccl-tests) and TRT-LLM custom all-reduce on one node; DeepEP low-latency and normal dispatch/combine."""
    rows = []
    for system, hw in SYSTEMS.items():
        path = f"{AIC_DATA}/{system}/comm/nccl/{NCCL[system]}/nccl_perf.parquet"
        t = parquet(aic, path)
        t = t[t.nccl_dtype == "half"]
        for (op, ranks), g in sorted(t.groupby(["op_name", "num_gpus"])):
            if op == "reduce_scatter" or (op != "all_reduce" and ranks not in (8, 4) or ranks not in (2, 4, 8)):
                continue
            for r in g.sort_values("message_size").itertuples():
                rows.append(
                    dict(
                        kernel_class=op,
                        hardware=hw,
                        impl="nccl",
                        dtype="fp16",
                        message_bytes=int(r.message_size) * 2,
                        ranks=ranks,
                        tokens=0,
                        hidden=0,
                        topk=0,
                        experts=0,
                        time_s=f"{r.latency * 1e-3:.6g}",
                        source=src(path),
                    )
                )
        path = f"{AIC_DATA}/{system}/comm/trtllm/{TRTLLM}/custom_allreduce_perf.parquet"
        t = parquet(aic, path)
        for r in t.sort_values(["num_gpus", "message_size"]).itertuples():
            if r.message_size <= 2**26:
                rows.append(
                    dict(
                        kernel_class="all_reduce",
                        hardware=hw,
                        impl=f"trtllm_{r.implementation}",
                        dtype="bf16",
                        message_bytes=int(r.message_size) * 2,
                        ranks=int(r.num_gpus),
                        tokens=0,
                        hidden=0,
                        topk=0,
                        experts=0,
                        time_s=f"{r.latency * 1e-3:.6g}",
                        source=src(path),
                    )
                )
        ranks = RANKS_PER_NODE[system]
        path = f"{AIC_DATA}/{system}/comm/sglang/{DEEPEP_VERSION}/wideep_deepep_ll_perf.parquet"
        t = parquet(aic, path)
        t = t[(t.hidden_size == 7168) & (t.num_topk == 8) & (t.num_experts == 256)]
        for r in t.sort_values("num_token").itertuples():
            for phase in ("dispatch", "combine"):
                rows.append(
                    dict(
                        kernel_class=f"ep_{phase}_ll",
                        hardware=hw,
                        impl="deepep",
                        dtype="fp8" if phase == "dispatch" else "bf16",
                        message_bytes=0,
                        ranks=ranks,
                        tokens=int(r.num_token),
                        hidden=7168,
                        topk=8,
                        experts=256,
                        time_s=f"{getattr(r, f'{phase}_avg_t_us') * 1e-6:.6g}",
                        source=src(path),
                    )
                )
        path = f"{AIC_DATA}/{system}/comm/sglang/{DEEPEP_VERSION}/wideep_deepep_normal_perf.parquet"
        t = parquet(aic, path)
        t = t[(t.hidden_size == 7168) & (t.num_topk == 8) & (t.num_experts == 256)]
        for tokens, g in sorted(t.groupby("num_token")):
            if tokens not in (1, 8, 64, 128, 512, 1024, 2048, 4096, 8192, 16384):
                continue
            for phase in ("dispatch", "combine"):
                total = g[f"{phase}_transmit_us"] + g[f"{phase}_notify_us"]
                best = g.loc[total.idxmin()]  # the fastest SM setting the collector tried
                rows.append(
                    dict(
                        kernel_class=f"ep_{phase}_normal",
                        hardware=hw,
                        impl=f"deepep_sms{int(best[f'{phase}_sms'])}",
                        dtype="fp8" if phase == "dispatch" else "bf16",
                        message_bytes=0,
                        ranks=ranks,
                        tokens=int(tokens),
                        hidden=7168,
                        topk=8,
                        experts=256,
                        time_s=f"{total.min() * 1e-6:.6g}",
                        source=src(path),
                    )
                )
    return rows


def deepgemm_rows(repo: Path) -> list[dict]:
    """DeepGEMM README tables (H800 SXM5, FP8 1×128 block scaling): TFLOPS → time = 2·groups·M·N·K / rate."""
    text = git_show(repo, DEEPGEMM_COMMIT, "README.md").decode()
    source = f"github:deepseek-ai/DeepGEMM@{DEEPGEMM_COMMIT}:README.md"
    rows, section = [], None
    for line in text.splitlines():
        if line.startswith("###"):
            section = "contiguous" if "contiguous" in line.lower() else "masked" if "masked" in line.lower() else "dense"
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("|") or not cells[0].isdigit():
            continue
        nums = [float(re.sub(r"[^\d.]", "", c)) for c in cells if re.search(r"\d", c)]
        if len(cells) == 6:
            g, m, n, k, tflops = 1, *nums[:3], nums[3]
        else:
            g, m, n, k, tflops = *nums[:4], nums[4]
        flops = 2 * g * m * n * k
        rows.append(
            dict(
                kernel_class="gemm" if len(cells) == 6 else "grouped_gemm",
                hardware="h800",
                dtype="fp8_block",
                op=f"deepgemm:{section}",
                groups=int(g),
                m=int(m),
                n=int(n),
                k=int(k),
                time_s=f"{flops / (tflops * 1e12):.6g}",
                source=source,
            )
        )
    return rows


def deepep_rows(repo: Path) -> list[dict]:
    """DeepEP README low-latency table (H800, CX7 400 Gb/s IB, 128 tokens, hidden 7168, top-8, FP8 dispatch, BF16 combine)."""
    text = git_show(repo, DEEPEP_COMMIT, "README.md").decode()
    source = f"github:deepseek-ai/DeepEP@{DEEPEP_COMMIT}:README.md"
    rows = []
    for line in text.splitlines():
        m = re.match(r"\|\s*(\d+)\s*\|\s*(\d+) us\s*\|\s*\d+ GB/s\s*\|\s*(\d+)\s*\|\s*(\d+) us\s*\|", line)
        if m:
            ep, dispatch, _, combine = (int(x) for x in m.groups())
            for phase, us in (("dispatch", dispatch), ("combine", combine)):
                rows.append(
                    dict(
                        kernel_class=f"ep_{phase}_ll",
                        hardware="h800",
                        impl="deepep",
                        dtype="fp8" if phase == "dispatch" else "bf16",
                        message_bytes=0,
                        ranks=ep,
                        tokens=128,
                        hidden=7168,
                        topk=8,
                        experts=256,
                        time_s=f"{us * 1e-6:.6g}",
                        source=source,
                    )
                )
    return rows


def write(path: Path, rows: list[dict]) -> None:
    """Write rows as CSV (columns in first-row order, missing cells empty)."""
    cols = list(dict.fromkeys(c for r in rows for c in r))
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, cols, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    print(f"{path}: {len(rows)} rows")


def main() -> None:
    """Write the five CSV files."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--aic", type=Path, required=True)
    p.add_argument("--deepgemm", type=Path, required=True)
    p.add_argument("--deepep", type=Path, required=True)
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[2] / "moejax/data/reference/kernels")
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    write(a.out / "gemm.csv", gemm_rows(a.aic) + deepgemm_rows(a.deepgemm))
    write(a.out / "moe.csv", moe_rows(a.aic))
    write(a.out / "attention.csv", attention_rows(a.aic))
    write(a.out / "elementwise.csv", elementwise_rows(a.aic))
    write(a.out / "collectives.csv", collective_rows(a.aic) + deepep_rows(a.deepep))


if __name__ == "__main__":
    main()
