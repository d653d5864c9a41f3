"""Fabrics (switched, mesh, torus), group placement, the new hardware entries, and wide EP on NVL72."""

import dataclasses
import math
import re

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import moejax
from moejax import Accounting, Partition, SpecError, load_hardware, load_model
from moejax.catalogue import HARDWARE_FIELDS, hardware_entry
from moejax.engine.grid import PartitionSpace, enumerate_partitions
from moejax.physics.collectives import all_reduce, all_to_all, group_bw, send
from moejax.physics.fabrics.torus import torus_shape
from moejax.physics.partition import partition_valid
from moejax.physics.reference_fabric import Net
from moejax.physics.specs import FABRICS, HardwareSpec

NEW_HARDWARE = ["gb300-nvl72", "b300", "h20", "mi325x", "tpu-v5p", "tpu-v6e", "tpu-v7", "trainium2"]
BASES = {"nominal", "usable", "assumed"}
SOL = Accounting()


def _torus(dims=3.0, link_bw=100e9, intra_bw=600e9, island=6144.0, alpha=1e-6):
    return HardwareSpec(
        hbm_bytes=96e9,
        hbm_bw=2.8e12,
        flops_bf16=459e12,
        flops_fp8=459e12,
        intra_bw=intra_bw,
        intra_latency=alpha,
        island_size=island,
        inter_bw=6.25e9,
        inter_latency=10e-6,
        fabric=2.0,
        link_bw=link_bw,
        torus_dims=dims,
    )


# --- torus placement and collectives ------------------------------------------------------------


@pytest.mark.parametrize(
    "dims,chips,shape",
    [
        (3, 8, [2, 2, 2]),
        (3, 32, [4, 4, 2]),
        (3, 64, [4, 4, 4]),
        (3, 6144, [24, 16, 16]),  # the largest v5p slice, 16x16x24 (Cloud TPU v5p page)
        (2, 256, [16, 16]),  # a full v6e pod, 16x16 (Cloud TPU v6e page)
        (2, 16, [4, 4]),  # a trn2.48xlarge, 4x4 (AWS Trn2 architecture page)
    ],
)
def test_torus_shape_is_the_published_slice_shape(dims, chips, shape):
    sides = sorted((2.0 ** float(e) for e in torus_shape(_torus(dims=float(dims)), float(chips))), reverse=True)
    assert sides[:dims] == pytest.approx(shape, rel=1e-5)
    assert sides[dims:] == pytest.approx([1.0] * (3 - dims))


def test_torus_all_reduce_worked_example():
    """64 v5p chips on 4x4x4, 1 MB: 3 dimensions x 3 hops, reduce-scatter + all-gather = 18 α; every
    chip drives its 6 links: 2·63/64·S / (6 · 100 GB/s). Derived by hand, not from the code."""
    expected = 2 * 9 * 1e-6 + 2 * 63 / 64 * 1e6 / (6 * 100e9)
    assert expected == pytest.approx(21.28125e-6, rel=1e-9)
    assert float(all_reduce(_torus(), 64.0, 64.0, 1e6, SOL)) == pytest.approx(expected, rel=1e-5)
    # a 2D torus of the same chips (8x8) has 4 links and 2·7 hops per reduce-scatter
    assert float(all_reduce(_torus(dims=2.0), 64.0, 64.0, 1e6, SOL)) == pytest.approx(
        2 * 14 * 1e-6 + 2 * 63 / 64 * 1e6 / 400e9, rel=1e-5
    )


def test_torus_all_to_all_is_bisection_limited():
    """EP64 on a 4x4x4 cube, 7 MB per chip: 32 chips each send 32/64 of 7 MB across the cut of the
    longest side (4), 2·64/4 = 32 links per direction: 32·3.5e6/(32·100e9) = 35 µs, + α."""
    assert float(all_to_all(_torus(), 64.0, 64.0, 7e6, SOL)) == pytest.approx(1e-6 + 35e-6, rel=1e-5)
    # a pair: both links of its axis, the bisection and injection terms agree
    assert float(all_to_all(_torus(), 2.0, 2.0, 7e6, SOL)) == pytest.approx(1e-6 + 0.5 * 7e6 / 200e9, rel=1e-5)


def test_torus_group_gets_only_its_links():
    hw = _torus()
    assert [float(group_bw(hw, float(i), SOL)) for i in (2, 4, 8, 64)] == pytest.approx([200e9, 400e9, 600e9, 600e9], rel=1e-5)
    capped = _torus(intra_bw=300e9)  # intra_bw caps the links' sum
    assert float(group_bw(capped, 64.0, SOL)) == pytest.approx(300e9, rel=1e-6)


@pytest.mark.parametrize("fabric", ["torus", "mesh"])
def test_kernel_collectives_match_the_oracle(fabric):
    hw = _torus(dims=2.0, island=8.0) if fabric == "torus" else dataclasses.replace(_torus(), fabric=1.0, island_size=8.0)
    net = Net(
        {k: float(v) for k, v in vars(hw).items()}, {"comm_efficiency": 1.0, "collective_latency": 0.0, "a2a_peer_latency": 0.0}
    )
    for p, span in ((2.0, 2.0), (4.0, 4.0), (8.0, 8.0), (6.0, 6.0), (16.0, 16.0), (8.0, 64.0), (3.0, 12.0)):
        assert float(all_reduce(hw, p, span, 1e6, SOL)) == pytest.approx(net.all_reduce(p, span, 1e6), rel=1e-5), (p, span)
        assert float(all_to_all(hw, p, span, 1e6, SOL)) == pytest.approx(net.all_to_all(p, span, 1e6), rel=1e-5), (p, span)


# --- properties: bandwidth monotonicity, placement -------------------------------------------------

fabric_hw = st.builds(
    lambda fabric, dims, link, intra, island, inter: HardwareSpec(
        hbm_bytes=80e9,
        hbm_bw=3e12,
        flops_bf16=1e15,
        flops_fp8=2e15,
        intra_bw=intra,
        intra_latency=2e-6,
        island_size=island,
        inter_bw=inter,
        inter_latency=5e-6,
        fabric=fabric,
        link_bw=link,
        torus_dims=dims if fabric == 2.0 else 0.0,
    ),
    st.sampled_from([0.0, 1.0, 2.0]),
    st.sampled_from([1.0, 2.0, 3.0]),
    st.floats(10e9, 300e9),
    st.floats(50e9, 1.5e12),
    st.sampled_from([4.0, 8.0, 16.0, 72.0, 256.0]),
    st.floats(5e9, 100e9),
)
groups = st.tuples(st.sampled_from([1.0, 2.0, 3.0, 4.0, 8.0, 9.0, 16.0, 64.0, 72.0]), st.sampled_from([1.0, 2.0, 4.0, 8.0]))
sizes = st.floats(1e3, 1e8)


def _times(hw, p, span, n):
    return (float(all_reduce(hw, p, span, n, SOL)), float(all_to_all(hw, p, span, n, SOL)), float(send(hw, span, n, SOL)))


@settings(max_examples=60, deadline=None)
@given(fabric_hw, groups, sizes, st.floats(1.01, 4.0), st.sampled_from(["link_bw", "intra_bw", "inter_bw"]))
def test_more_link_bandwidth_is_never_slower(hw, group, n, factor, field):
    p, stride = group
    span = p * stride
    faster = dataclasses.replace(hw, **{field: getattr(hw, field) * factor})
    for slow, fast in zip(_times(hw, p, span, n), _times(faster, p, span, n)):
        assert fast <= slow * (1 + 1e-5), (field, slow, fast)


@settings(max_examples=60, deadline=None)
@given(fabric_hw, groups, sizes, st.floats(0.1, 10.0), st.floats(0.0, 1e-4))
def test_a_group_within_one_island_never_pays_inter_node_terms(hw, group, n, bw_factor, latency):
    p, stride = group
    span = min(p * stride, float(hw.island_size))
    p = min(p, span)
    other = dataclasses.replace(hw, inter_bw=hw.inter_bw * bw_factor, inter_latency=latency)
    assert _times(other, p, span, n) == pytest.approx(_times(hw, p, span, n), rel=1e-6)


# --- hardware catalogue ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", NEW_HARDWARE)
def test_new_hardware_numbers_are_positive_sourced_and_say_their_basis(name):
    entry = hardware_entry(name)
    for field in HARDWARE_FIELDS + ("price_per_gpu_hour", "board_power"):
        if field not in entry:
            # optional: a torus's dimensions, and the software stack (CUDA when not named)
            assert (field == "torus_dims" and entry["fabric"]["value"] != "torus") or field == "stack", field
            continue
        item = entry[field]
        assert isinstance(item, dict) and item["source"].strip(), field
        if field not in ("fabric", "link_bw", "flops_fp4", "torus_dims", "stack"):
            assert item["value"] > 0, field
            assert item["basis"] in BASES, field
        if field.startswith("flops_"):
            assert item["sparsity"] == "dense", field
    hw = load_hardware(name)
    if entry["fabric"]["value"] in ("mesh", "torus"):
        assert float(hw.link_bw) > 0
    if entry["fabric"]["value"] == "torus":  # the links' sum is the chip's ICI bandwidth per direction
        assert 2 * float(hw.torus_dims) * float(hw.link_bw) == pytest.approx(float(hw.intra_bw), rel=1e-9)


@pytest.mark.parametrize("name", NEW_HARDWARE + ["gb200-nvl72", "h800", "a100-sxm"])
def test_hardware_loader_round_trip(tmp_path, name):
    entry = hardware_entry(name)
    entry.pop("_where")
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(entry))
    assert vars(load_hardware(str(path))) == vars(load_hardware(name))
    spec = load_hardware(name, link_bw=1e9, torus_dims=1)
    assert float(spec.link_bw) == 1e9 and float(spec.torus_dims) == 1


def test_nvl72_and_tpu_islands():
    nvl = load_hardware("gb200-nvl72")
    assert float(nvl.island_size) == 72 and float(nvl.fabric) == FABRICS["switched"]
    assert float(group_bw(nvl, 72.0, SOL)) == float(nvl.intra_bw)  # all 72 GPUs at full NVLink bandwidth
    v5p = load_hardware("tpu-v5p")
    assert float(v5p.fabric) == FABRICS["torus"] and float(v5p.torus_dims) == 3


@pytest.mark.parametrize(
    "changes,field",
    [
        ({"torus_dims": 0.0}, "torus_dims"),
        ({"torus_dims": 4.0}, "torus_dims"),
        ({"link_bw": 0.0}, "link_bw"),
    ],
)
def test_bad_torus_names_the_field(changes, field):
    with pytest.raises(SpecError, match=f"HardwareSpec.{field} = "):
        dataclasses.replace(_torus(), **changes)


def test_torus_entry_without_dims_names_the_field(tmp_path):
    entry = hardware_entry("tpu-v6e")
    entry.pop("_where")
    entry.pop("torus_dims")
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(entry))
    with pytest.raises(SpecError, match="torus_dims = 0"):
        load_hardware(str(path))


# --- wide expert parallelism -----------------------------------------------------------------------


def test_ep72_on_nvl72_is_enumerated_and_feasible_for_deepseek():
    """DeepSeek-V3's 256 experts + 32 redundant = 288 slots, 4 per rank on EP72: the frontier search
    space offers it on 72 GPUs, it is legal, and it fits one NVL72 rack at 32k context."""
    space = PartitionSpace(ep=(1, 2, 4, 8, 16, 32, 64, 72), dp_attn=(1, 2, 4, 8, 9, 18, 36, 72), redundant_experts=(0, 16, 32))
    table = enumerate_partitions(72, space)
    cols = {f: i for i, f in enumerate(f.name for f in dataclasses.fields(Partition))}
    ep72 = table[(table[:, cols["ep"]] == 72) & (table[:, cols["redundant_experts"]] == 32)]
    assert len(ep72) > 0
    assert not (table[:, cols["redundant_experts"]] > table[:, cols["ep"]]).any()  # at most one redundant slot per rank
    dsv3 = load_model("deepseek-v3", weights="fp8")
    part = Partition(tp=1.0, dp_attn=72.0, ep=72.0, redundant_experts=32.0)
    assert bool(partition_valid(dsv3, part))
    assert not bool(partition_valid(dsv3, dataclasses.replace(part, redundant_experts=0.0)))  # 256/72 does not split
    r = moejax.decode_step(dsv3, "gb200-nvl72", part, context=32768)
    assert bool(r.feasible) and float(r.b_max) >= 72 and float(r.throughput_per_gpu) > 0


def test_frontier_grid_has_nvl72_and_wide_ep():
    from moejax.catalogue import CONF_DIR

    grid = yaml.safe_load((CONF_DIR / "grid" / "frontier.yaml").read_text())
    assert "gb200-nvl72" in grid["hardware"] and 72 in grid["num_gpus"]
    assert {32, 64, 72} <= set(grid["partitions"]["ep"])
    assert math.lcm(*[e for e in grid["partitions"]["dp_attn"]]) % 9 == 0
    assert any((256 + r) % 72 == 0 for r in grid["partitions"]["redundant_experts"])
    assert np.all(np.asarray(grid["partitions"]["redundant_experts"]) >= 0)


def test_ep_beyond_the_nvl72_island_goes_over_the_nic():
    """EP144 over two NVL72 racks, 7 MB per GPU: 71/144 of it goes to rack peers at 900 GB/s (3.8 µs)
    while 72/144 leaves the rack on GB200's 400G NIC at 50 GB/s (70 µs), concurrently; the inter-node
    α (5 µs) is paid once: 75 µs. Inside one rack, EP72 pays only NVLink: 2 µs + 7.7 µs."""
    nvl = load_hardware("gb200-nvl72")
    expected = 5e-6 + max(71 / 144 * 7e6 / 900e9, 72 / 144 * 7e6 / 50e9)
    assert expected == pytest.approx(75e-6, rel=1e-9)
    assert float(all_to_all(nvl, 144.0, 144.0, 7e6, SOL)) == pytest.approx(expected, rel=1e-5)
    assert float(all_to_all(nvl, 72.0, 72.0, 7e6, SOL)) == pytest.approx(2e-6 + 71 / 72 * 7e6 / 900e9, rel=1e-5)
    dsv3 = load_model("deepseek-v3", weights="fp8")
    part = Partition(tp=1.0, dp_attn=144.0, ep=144.0, redundant_experts=32.0)  # 288 slots, 2 per rank
    r = moejax.decode_step(dsv3, "gb200-nvl72", part, context=32768)
    assert bool(r.feasible) and float(r.t_comm) > 0


def test_hbm_capacity_is_what_the_device_reports():
    """Issue 19: HBM capacities are the bytes the device exposes (binary-sized parts), not the
    marketed decimal GB. Where a source quotes nvidia-smi's MiB total or the vendor's GiB, the value
    is that many bytes (to the printed precision): 81559 MiB on an H100 SXM is 85.52e9 B, not 80e9."""
    quoted = 0
    for name in moejax.catalogue.available("hardware"):
        item = hardware_entry(name)["hbm_bytes"]
        if item.get("basis") not in ("usable", "assumed"):
            continue
        mib = re.search(r"reports? (\d+) MiB|(\d+) MiB = ", item["source"])
        gib = re.search(r"VRAM (\d+) GiB", item["source"])
        exact = int(mib.group(1) or mib.group(2)) * 2**20 if mib else int(gib.group(1)) * 2**30 if gib else None
        if exact is not None:
            quoted += 1
            assert item["value"] == pytest.approx(exact, rel=1e-3), name
    assert quoted >= 8
    assert float(load_hardware("h100-sxm").hbm_bytes) == pytest.approx(81559 * 2**20, rel=1e-4)
