"""AIConfigurator's silicon CSV (measured closed-loop serving runs) read as moejax benchmarks.

The format is AIConfigurator's ``silicon_sample.csv`` as published (README of
``moejax/data/reference/serving/aic-silicon``), recognised by its header. Each row is one run: a
closed loop of ``silicon_concurrency`` requests (in ``silicon_data_source``) of ``isl`` prompt and
``osl`` output tokens against one deployment, with the measured mean TTFT and TPOT (ms).

How a row is read (docs/validation.md is the contract):

- **model**: ``model_path`` (a Hugging Face id) -> a catalogue name: the id's last part,
  lower-cased, with ``-Instruct``, ``-FP8``, ``-NVFP4`` and ``-FP4`` suffixes dropped, then
  ``MODEL_ALIASES`` for names the catalogue lacks (DeepSeek-R1 and V3.1 are DeepSeek-V3's
  architecture); a name not in the catalogue makes the row not expressible.
- **hardware**: ``system`` -> ``SYSTEMS``.
- **dtypes**: ``gemm_quant_mode`` sets the weights and GEMM inputs (fp8 and fp8_block: FP8 W8A8;
  nvfp4: NVFP4 W4A4; empty: BF16), ``moe_quant_mode`` the routed experts (fp8, fp8_block, nvfp4,
  w4a16_mxfp4: MXFP4 weights with BF16 GEMMs, int4: INT4 weights with BF16 GEMMs). KV cache:
  FP8 on TensorRT-LLM with a quantised checkpoint (its default ``kv_cache_quant_algo``), else BF16
  (vLLM's and SGLang's ``auto``). EP dispatch in FP8 where the GEMM inputs are FP8 or FP4.
- **agg**: one worker of ``tp_size x attention_dp_size x pp_size`` GPUs (empty or 0 attention DP:
  1; empty or 0 ``moe_ep_size``: 1, ``moe_tp_size``: the whole stage); MoE layers ``moe_tp_size x
  moe_ep_size`` over the same GPUs (must equal tp·attention_dp; a dense model's are not read);
  the running batch is capped at ``batch_size x attention_dp_size`` (per attention-DP rank). A
  worker written ``moe_tp_size = moe_ep_size = g > 1`` with ``tp_size x attention_dp_size = g²``
  GPUs, more than the system's NVLink island, has its EP degree multiplied into the attention split
  (``expert_parallel_multiplied_in``): it is read as ``g`` GPUs, attention ``tp/g`` (or DP ``dp/g``),
  experts EP ``g``. In the vendored file these are 172 agg rows on 8-GPU H200, B200 and B300 nodes
  (16 or 64 GPUs as written, one engine instance); 95 of them name ``tp{g}_ep{g}`` in their id, and
  20 of those are copies, TPOT and TTFT to the last digit, of a row written ``g`` GPUs with MoE
  ``1 x g``. Where
  the concurrency is a whole multiple ``w > 1`` of that cap, the run spread it over ``w`` such
  workers (the columns are per worker); otherwise one worker serves it all.
- **disagg**: ``prefill_num_workers`` prefill and ``decode_num_workers`` decode workers with their
  own parallelism; the running batch of a decode worker is capped at ``decode_batch_size x
  decode_attention_dp_size``, a prefill pass at ``prefill_batch_size x prefill_attention_dp_size``
  prompts. A row without its worker counts or batch sizes is not expressible (its decode batch,
  hence its TPOT, is not determined).
- **concurrency**: ``silicon_concurrency`` requests in flight over the whole deployment.
- **token budget** (agg): ``TOKEN_BUDGET`` per backend, the engines' default tokens per step.
- **scheduling** (agg): ``PREFILL_FIRST`` per backend: SGLang prefills waiting prompts before the
  next decode step, so its closed loops run in lockstep (``moejax.physics.served``); vLLM and
  TensorRT-LLM mix prompt chunks into decode steps.

Every malformed value is one line naming the file, the row id and the column.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import math
import re
from pathlib import Path

from ...catalogue import load_hardware
from ...physics.specs import SpecError

HEADER = (
    "id",
    "silicon_data_source",
    "backend",
    "backend_version",
    "model_path",
    "system",
    "precision",
    "mode",
    "isl",
    "osl",
    "gemm_quant_mode",
    "moe_quant_mode",
    "batch_size",
    "tp_size",
    "pp_size",
    "attention_dp_size",
    "moe_tp_size",
    "moe_ep_size",
    "prefill_batch_size",
    "prefill_num_workers",
    "prefill_tp_size",
    "prefill_pp_size",
    "prefill_attention_dp_size",
    "prefill_moe_tp_size",
    "prefill_moe_ep_size",
    "decode_batch_size",
    "decode_num_workers",
    "decode_tp_size",
    "decode_pp_size",
    "decode_attention_dp_size",
    "decode_moe_tp_size",
    "decode_moe_ep_size",
    "silicon_ttft_ms",
    "silicon_tpot_ms",
)
SYSTEMS = {
    "h100_sxm": "h100-sxm",
    "h200_sxm": "h200",
    "b200_sxm": "b200",
    "b300_sxm": "b300",
    "gb200": "gb200-nvl72",
    "gb300": "gb300-nvl72",
    "a100_sxm": "a100-sxm",
    "h20": "h20",
    "mi300x": "mi300x",
    "mi355x": "mi355x",
}
# Fallbacks for names the catalogue may not carry (its own aliases, alias_of:, are found first).
MODEL_ALIASES = {
    "deepseek-r1": "deepseek-v3",
    "deepseek-v3.1": "deepseek-v3",
    "deepseek-r1-0528": "deepseek-v3",
}
NAME_SUFFIXES = ("-instruct", "-fp8", "-nvfp4", "-fp4")
BACKENDS = ("trtllm", "sglang", "vllm")
MODES = ("agg", "disagg")
# Tokens per step of chunked prefill, each engine's default for these GPUs: TensorRT-LLM
# max_num_tokens 8192; vLLM V1 max_num_batched_tokens 8192 (API server); SGLang chunked_prefill_size 8192.
TOKEN_BUDGET = {"trtllm": 8192.0, "sglang": 8192.0, "vllm": 8192.0}
# Each engine's default scheduling of a waiting prompt: SGLang's scheduler runs a new prefill batch
# before the next decode step ("Run prefill first if possible", Scheduler.get_next_batch_to_run in
# sgl-project/sglang python/sglang/srt/managers/scheduler.py; mixing only with --enable-mixed-chunk);
# vLLM V1 schedules its running requests first and fills the rest of the token budget with prompt
# chunks; TensorRT-LLM's in-flight batching puts context and generation requests in one step.
PREFILL_FIRST = {"trtllm": 0.0, "sglang": 1.0, "vllm": 0.0}
GEMM_QUANT = {
    "": ("bf16", "bf16"),
    "bf16": ("bf16", "bf16"),
    "fp16": ("fp16", "fp16"),
    "fp8": ("fp8", "fp8"),
    "fp8_block": ("fp8", "fp8"),
    "nvfp4": ("nvfp4", "fp4"),
}  # -> (weights, GEMM inputs)
MOE_QUANT = {
    "": ("bf16", None),
    "bf16": ("bf16", None),
    "fp16": ("fp16", None),
    "fp8": ("fp8", None),
    "fp8_block": ("fp8", None),
    "nvfp4": ("nvfp4", None),
    "w4a16_mxfp4": ("mxfp4", "bf16"),
    "int4": ("int4", "bf16"),
    "w4a8_mxfp4_mxfp8": ("mxfp4", "fp8"),
}  # -> (experts, GEMM inputs if it differs)


@dataclasses.dataclass(frozen=True)
class Pool:
    """One pool's workers and their parallelism (``tp`` per attention-DP rank), and its per-worker cap
    (running batch for decode or agg, prompts per pass for prefill; 0: none published)."""

    workers: int
    tp: int
    pp: int
    dp_attn: int
    moe_tp: int
    moe_ep: int
    cap: int


@dataclasses.dataclass(frozen=True)
class ServingRow:
    """One measured closed-loop run. ``decode`` is the agg worker or the decode pool; ``prefill``
    the prefill pool (None: agg). Times in s. ``model`` is the catalogue name (or the reason it has
    none in ``unexpressible``); ``groups`` the labels residuals are grouped by."""

    id: str
    backend: str
    model_path: str
    model: str
    hardware: str
    mode: str
    isl: float
    osl: float
    concurrency: int
    dtypes: dict
    decode: Pool | None
    prefill: Pool | None
    token_budget: float
    ttft: float
    tpot: float
    unexpressible: str = ""
    draft_tokens: float = 0.0
    accepted: float = 0.0
    prefill_first: float = 0.0  # agg on a prefill-first engine (PREFILL_FIRST)

    @property
    def groups(self) -> dict:
        return {"backend": self.backend, "system": self.hardware, "model": self.model_path, "mode": self.mode}


def is_silicon_csv(path: Path) -> bool:
    """True when the file's first line is a CSV header with AIConfigurator's silicon columns."""
    try:
        with open(path, newline="") as f:
            head = next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError):
        return False
    return {"id", "silicon_tpot_ms", "silicon_ttft_ms", "silicon_data_source"} <= set(head)


def catalogue_name(model_path: str, available: set[str]) -> str | None:
    """The catalogue model of a Hugging Face id (module docstring), or None.

    >>> catalogue_name("nvidia/DeepSeek-R1-NVFP4", {"deepseek-v3"})
    'deepseek-v3'
    >>> catalogue_name("meta-llama/Llama-3.1-8B-Instruct", {"llama-3.1-8b"})
    'llama-3.1-8b'
    """
    name = model_path.rsplit("/", 1)[-1].lower()
    changed = True
    while changed:
        changed = False
        for suffix in NAME_SUFFIXES:
            if name.endswith(suffix):
                name, changed = name[: -len(suffix)], True
    for candidate in (name, MODEL_ALIASES.get(name)):
        if candidate in available:
            return candidate
    return None


class _Row:
    def __init__(self, path: Path, line: int, raw: dict):
        self.raw, self.where = raw, f"{path}: row {raw.get('id') or f'#{line}'!r}"

    def fail(self, column: str, allowed: str):
        raise SpecError(f"{self.where}: {column} = {self.raw.get(column)!r} is invalid: {allowed}")

    def number(self, column: str, *, integer=False, minimum=1.0, empty=None):
        text = (self.raw.get(column) or "").strip()
        if not text:
            if empty is not None:
                return empty
            self.fail(column, "required (a number)")
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < minimum or (integer and not value.is_integer()):
            self.fail(column, f"must be {'an integer' if integer else 'a number'} >= {minimum:g}")
        return int(value) if integer else value

    def choice(self, column: str, allowed) -> str:
        value = (self.raw.get(column) or "").strip()
        if value not in allowed:
            self.fail(column, f"allowed {', '.join(repr(a) for a in allowed)}")
        return value


def _pool(r: _Row, prefix: str, workers: bool, island: int) -> Pool | None:
    """A pool's columns (``prefix`` '' for agg, 'prefill_' or 'decode_'); None when its worker count
    or batch is not published (disagg). ``island``: the system's NVLink island (GPUs)."""
    if workers and not (r.raw.get(f"{prefix}num_workers") or "").strip():
        return None
    if not (r.raw.get(f"{prefix}batch_size") or "").strip():
        return None
    tp = r.number(f"{prefix}tp_size", integer=True)
    dp = r.number(f"{prefix}attention_dp_size", integer=True, minimum=0, empty=1) or 1
    pool = Pool(
        workers=r.number(f"{prefix}num_workers", integer=True) if workers else 1,
        tp=tp,
        pp=r.number(f"{prefix}pp_size", integer=True, empty=1),
        dp_attn=dp,
        moe_tp=r.number(f"{prefix}moe_tp_size", integer=True, minimum=0, empty=0) or tp * dp,
        moe_ep=r.number(f"{prefix}moe_ep_size", integer=True, minimum=0, empty=1) or 1,
        cap=r.number(f"{prefix}batch_size", integer=True) * dp,
    )
    return expert_parallel_multiplied_in(pool, island) if not workers else pool


def expert_parallel_multiplied_in(pool: Pool, island: int) -> Pool:
    """An agg worker written with the EP degree multiplied into its attention split (module
    docstring): ``moe_tp = moe_ep = g > 1`` and ``tp·dp_attn = g²`` (one of them ``g²``) larger than
    the system's NVLink ``island`` is a ``g``-GPU worker, attention ``tp/g`` (or ``dp_attn/g``),
    experts EP ``g`` (``moe_tp`` 1); the cap (``batch_size`` per written DP rank times the written DP)
    is kept. Any other pool is returned as is (``g² <= island`` is also a real MoE TP g x EP g).

    On an 8-GPU B200 node: tp 64, moe 8 x 8 (the row's id names tp8_ep8) -> tp 8, EP 8 on 8 GPUs;
    attention DP 16, moe 4 x 4, batch 16 (cap 256) -> DP 4, EP 4, cap 256; tp 4, moe 2 x 2: as written.
    """
    g = pool.moe_ep
    if g <= 1 or pool.moe_tp != g or pool.pp != 1 or pool.tp * pool.dp_attn != g * g or g * g <= island:
        return pool
    tp, dp = (pool.tp // g, pool.dp_attn) if pool.tp == g * g else (pool.tp, pool.dp_attn // g)
    if tp * dp != g:
        return pool
    return dataclasses.replace(pool, tp=tp, dp_attn=dp, moe_tp=1)


def dtypes(backend: str, gemm: str, moe: str) -> dict:
    """``load_model`` dtypes of a row's quantisation (module docstring)."""
    weights, gemm_in = GEMM_QUANT[gemm]
    experts, expert_gemm = MOE_QUANT[moe or gemm]
    quantised = gemm not in ("", "bf16", "fp16")
    return {
        "weights": weights,
        "experts": experts,
        "gemm": expert_gemm or gemm_in,
        "kv": "fp8" if backend == "trtllm" and quantised else "bf16",
        "dispatch": "fp8" if gemm_in in ("fp8", "fp4") else "bf16",
        "activations": "bf16",
    }


@functools.lru_cache(maxsize=None)
def _island(hardware: str | None) -> int:
    """GPUs in one NVLink island of a catalogue accelerator (no limit for an unmapped system)."""
    return 1 << 30 if hardware is None else int(load_hardware(hardware).island_size)


def read_row(path: Path, line: int, raw: dict, available: set[str]) -> ServingRow:
    """One CSV row as a ``ServingRow`` (``unexpressible`` says why moejax cannot evaluate it);
    one-line ``SpecError`` naming the row and column on a malformed value."""
    r = _Row(path, line, raw)
    if not (raw.get("id") or "").strip():
        r.fail("id", "must be a non-empty string")
    backend = r.choice("backend", BACKENDS)
    mode = r.choice("mode", MODES)
    gemm, moe = r.choice("gemm_quant_mode", tuple(GEMM_QUANT)), r.choice("moe_quant_mode", tuple(MOE_QUANT))
    isl, osl = r.number("isl"), r.number("osl")
    ttft, tpot = r.number("silicon_ttft_ms", minimum=1e-9) / 1e3, r.number("silicon_tpot_ms", minimum=1e-9) / 1e3
    system = (raw.get("system") or "").strip()
    match = re.search(r"silicon_concurrency=(\d+)", raw.get("silicon_data_source") or "")
    model = catalogue_name(raw.get("model_path") or "", available) or ""
    reason = ""
    island = _island(SYSTEMS.get(system))
    if mode == "agg":
        decode, prefill = _pool(r, "", False, island), None
    else:
        decode, prefill = _pool(r, "decode_", True, island), _pool(r, "prefill_", True, island)
    if mode == "agg" and decode is not None and match is not None:
        concurrency = int(match.group(1))
        if concurrency > decode.cap and concurrency % decode.cap == 0:
            decode = dataclasses.replace(decode, workers=concurrency // decode.cap)
    if not model:
        reason = f"model_path {raw.get('model_path')!r} has no catalogue model (conf/model/)"
    elif system not in SYSTEMS:
        reason = f"system {system!r} is not mapped to a catalogue accelerator (known: {', '.join(SYSTEMS)})"
    elif match is None:
        reason = "silicon_data_source gives no silicon_concurrency (requests in flight)"
    elif decode is None or (mode == "disagg" and prefill is None):
        reason = "worker counts or batch sizes not published (the decode batch, hence TPOT, is not determined)"
    return ServingRow(
        id=raw["id"].strip(),
        backend=backend,
        model_path=(raw.get("model_path") or "").strip(),
        model=model,
        hardware=SYSTEMS.get(system, system),
        mode=mode,
        isl=isl,
        osl=osl,
        concurrency=int(match.group(1)) if match else 0,
        dtypes=dtypes(backend, gemm, moe),
        decode=decode,
        prefill=prefill,
        token_budget=TOKEN_BUDGET[backend],
        prefill_first=PREFILL_FIRST[backend] if mode == "agg" else 0.0,
        ttft=ttft,
        tpot=tpot,
        unexpressible=reason,
    )


def load_silicon(path: str | Path, available: set[str]) -> list[ServingRow]:
    """Every row of a silicon CSV; one-line ``SpecError`` for a missing column, a duplicate id or a
    malformed value (naming the row id and the column)."""
    path = Path(path)
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in HEADER if c not in (reader.fieldnames or [])]
        if missing:
            raise SpecError(f"{path}: column {missing[0]!r} is missing: a silicon CSV has {', '.join(HEADER)}")
        rows, seen = [], set()
        for line, raw in enumerate(reader, start=2):
            row = read_row(path, line, raw, available)
            if row.id in seen:
                raise SpecError(f"{path}: row {row.id!r}: id is invalid: duplicate (ids must be unique)")
            seen.add(row.id)
            rows.append(row)
    if not rows:
        raise SpecError(f"{path}: no rows: a silicon CSV needs at least one run")
    return rows
