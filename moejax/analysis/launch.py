"""Launch commands for a moejax partition: the vLLM, SGLang or TensorRT-LLM command line (and, for
``trtllm-serve``, its ``--extra_llm_api_options`` YAML) that deploys one replica as moejax laid it
out. ``python -m moejax.point ... launch=vllm|sglang|trtllm`` prints it for the winning partition.

Each engine is pinned to one version, and every flag it may emit is listed with its documentation
page in ``conf/launch.yaml`` (vLLM 0.11.0, SGLang 0.5.4, TensorRT-LLM 1.1.0). The mapping, with
``G = tp · dp_attn`` GPUs per pipeline stage:

| moejax | vLLM | SGLang | TensorRT-LLM |
|---|---|---|---|
| attention TP × DP-attention | ``--tensor-parallel-size tp --data-parallel-size dp_attn`` | ``--tp-size G --dp-size dp_attn --enable-dp-attention`` | ``--tp_size G`` + ``enable_attention_dp`` (attention TP 1 only) |
| experts EP | ``--enable-expert-parallel`` (EP = G only) | ``--ep-size ep`` | ``--ep_size ep`` |
| redundant experts | ``--enable-eplb --eplb-config {num_redundant_experts}`` | ``--enable-eplb --ep-num-redundant-experts`` | not emitted |
| PP | ``--pipeline-parallel-size`` | ``--pp-size`` | ``--pp_size`` |
| batch per replica | ``--max-num-seqs`` (per DP rank) | ``--max-running-requests`` (total) | ``--max_batch_size`` (per rank) |
| KV dtype | ``--kv-cache-dtype`` | ``--kv-cache-dtype`` | ``kv_cache_config.dtype`` |
| MTP, ``mtp`` draft tokens | ``--speculative-config {method: mtp}`` | ``--speculative-algorithm EAGLE`` + steps | ``speculative_config: {decoding_type: MTP}`` |
| disaggregated role | ``--kv-transfer-config`` (NIXL) | ``--disaggregation-mode`` | ``cache_transceiver_config`` |

Where the partition has no equivalent in the engine (KVP/Helix or CP context parallelism, a dense
FFN tensor-parallel degree other than the engine's, vLLM experts split EP × TP, TensorRT-LLM
attention TP × DP, a KV dtype the engine does not store) the text says so in a line starting
``# not expressible in <engine> <version>:``, and the command leaves that feature out.
"""  # noqa: E501 (the mapping table's rows)

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
import shlex

import yaml

from ..catalogue import CONF_DIR, model_entry
from ..physics.specs import SpecError

ENGINES = ("vllm", "sglang", "trtllm")
TRTLLM_OPTIONS_FILE = "extra-llm-api-options.yaml"


@functools.cache
def engine_table() -> dict:
    """``conf/launch.yaml``: per engine its name, version, command, documented flags (with urls)."""
    return yaml.safe_load((CONF_DIR / "launch.yaml").read_text())


def model_path(name: str) -> str:
    """The Hugging Face repository of a catalogue model (from its ``source`` url), else a placeholder."""
    try:
        source = str(model_entry(name).get("source", ""))
    except SpecError:
        source = ""
    found = re.match(r"https://huggingface\.co/([^/\s]+/[^/\s]+)", source)
    return found.group(1) if found else f"<path to {name} weights>"


@dataclasses.dataclass(frozen=True)
class Deployment:
    """One replica to launch. ``degrees``: the moejax ``Partition`` fields (tp, ep, pp, dp,
    dp_attn, kvp, kv_mode, dense_tp, redundant_experts; dense_tp 0 = the whole attention group);
    ``batch``: sequences per replica; ``kv_dtype``: a moejax dtype name; ``mtp``: draft tokens
    per step (0: no speculative decoding); ``moe``: the model has routed experts; ``role``: None
    (aggregated), ``"prefill"`` or ``"decode"`` (disaggregated serving)."""

    model: str
    degrees: dict
    batch: float
    kv_dtype: str = "bf16"
    mtp: int = 0
    moe: bool = True
    role: str | None = None


def launch(engine: str, d: Deployment) -> str:
    """The launch text of ``d`` for ``engine`` (one of ``ENGINES``): comment lines (``#``), the
    not-expressible lines, then the command (TensorRT-LLM: a heredoc writing its options YAML first)."""
    if engine not in ENGINES:
        raise SpecError(f"launch = {engine!r} is invalid: allowed {', '.join(ENGINES)}")
    e = engine_table()[engine]
    g = {k: int(round(float(v))) for k, v in d.degrees.items()}
    tp, ep, pp, dpa, kvp = g["tp"], g.get("ep", 1), g.get("pp", 1), g.get("dp_attn", 1), g.get("kvp", 1)
    group = tp * dpa
    dense_tp = g.get("dense_tp", 0) or group * kvp
    spare = g.get("redundant_experts", 0)
    per_rank = math.ceil(float(d.batch) / dpa) if e["batch_per_dp_rank"] else math.ceil(float(d.batch))
    missing: list[str] = []
    if kvp > 1:
        missing.append(
            f"{'CP' if g.get('kv_mode') == 2 else 'KVP (Helix)'}{kvp}: no KV-parallel decode; the command "
            f"runs without it on {group} GPUs per stage (KV and memory per GPU grow {kvp}x)"
        )
    kv = e["kv_cache_dtype"].get(d.kv_dtype)
    if kv is None:
        missing.append(f"KV cache dtype {d.kv_dtype}: stored as {', '.join(e['kv_cache_dtype'])} only; left at the default")
    flags: list[tuple[str, object]] = []
    options: dict = {}
    if engine == "vllm":
        engine_dense = tp
        flags += [("--tensor-parallel-size", tp), ("--pipeline-parallel-size", pp)]
        flags += [("--data-parallel-size", dpa)] if dpa > 1 else []
        if d.moe and ep > 1:
            if ep == group:
                flags.append(("--enable-expert-parallel", None))
            else:
                missing.append(
                    f"experts as EP{ep} x TP{group // ep}: vLLM shards experts over all {group} TP x DP GPUs, "
                    "as EP (--enable-expert-parallel) or as TP; left as TP"
                )
        if d.moe and spare and ep == group:
            flags += [("--enable-eplb", None), ("--eplb-config", json.dumps({"num_redundant_experts": spare}))]
        flags.append(("--max-num-seqs", per_rank))
        flags += [("--kv-cache-dtype", kv)] if kv else []
        flags += [("--speculative-config", json.dumps({"method": "mtp", "num_speculative_tokens": d.mtp}))] if d.mtp else []
        flags += [("--kv-transfer-config", json.dumps({"kv_connector": "NixlConnector", "kv_role": "kv_both"}))] if d.role else []
    elif engine == "sglang":
        engine_dense = group
        flags += [("--tp-size", group), ("--pp-size", pp)]
        flags += [("--dp-size", dpa), ("--enable-dp-attention", None)] if dpa > 1 else []
        flags += [("--ep-size", ep)] if d.moe and ep > 1 else []
        flags += [("--enable-eplb", None), ("--ep-num-redundant-experts", spare)] if d.moe and spare else []
        flags.append(("--max-running-requests", per_rank))
        flags += [("--kv-cache-dtype", kv)] if kv else []
        if d.mtp:
            flags += [
                ("--speculative-algorithm", "EAGLE"),
                ("--speculative-num-steps", d.mtp),
                ("--speculative-eagle-topk", 1),
                ("--speculative-num-draft-tokens", d.mtp + 1),
            ]
        flags += [("--disaggregation-mode", d.role)] if d.role else []
    else:
        engine_dense = group
        if dpa > 1 and tp > 1:
            missing.append(
                f"attention TP{tp} x DP{dpa}: TensorRT-LLM's attention DP runs attention at TP1 on each of the "
                f"{group} ranks; emitted as attention DP{group}"
            )
        flags += [("--tp_size", group), ("--pp_size", pp)]
        flags += [("--ep_size", ep)] if d.moe and ep > 1 else []
        if d.moe and spare:
            missing.append(
                f"{spare} redundant experts: TensorRT-LLM's MoE load balancer (moe_config.load_balancer) "
                "takes a slot layout; not emitted"
            )
        flags.append(("--max_batch_size", per_rank))
        options.update({"enable_attention_dp": True} if dpa > 1 else {})
        options.update({"kv_cache_config": {"dtype": kv}} if kv else {})
        options.update({"speculative_config": {"decoding_type": "MTP", "num_nextn_predict_layers": d.mtp}} if d.mtp else {})
        options.update({"cache_transceiver_config": {"backend": "DEFAULT"}} if d.role else {})
        flags += [("--extra_llm_api_options", TRTLLM_OPTIONS_FILE)] if options else []
    if dense_tp != engine_dense:
        missing.append(
            f"dense FFN and LM head at TP{dense_tp}: {e['name']} runs them at TP{engine_dense}; left at TP{engine_dense}"
        )

    label = "·".join(f"{k}{v}" for k, v in (("TP", tp), ("EP", ep), ("PP", pp), ("DPattn", dpa), ("KVP", kvp)))
    lines = [
        f"# {e['name']} {e['version']}: {label}, {pp * group * kvp} GPUs per replica, batch {float(d.batch):g} per replica"
        + (f", {d.role} role of disaggregated serving" if d.role else "")
        + " (flags and sources: conf/launch.yaml)"
    ]
    if g.get("dp", 1) > 1:
        lines.append(f"# {g['dp']} replicas: run {g['dp']} copies of this command behind a load balancer")
    if engine == "trtllm" and d.role:
        lines.append(
            "# disaggregated: front the prefill (context) and decode (generation) servers with "
            "trtllm-serve disaggregated -c <config listing both>"
        )
    lines += [f"# not expressible in {e['name']} {e['version']}: {m}" for m in missing]
    if options:
        lines += [f"cat > {TRTLLM_OPTIONS_FILE} <<'EOF'", yaml.safe_dump(options, sort_keys=False).rstrip(), "EOF"]
    words = [*e["command"].split(), d.model]
    for flag, value in flags:
        words += [flag] if value is None else [flag, str(value)]
    lines.append(shlex.join(words))
    return "\n".join(lines)
