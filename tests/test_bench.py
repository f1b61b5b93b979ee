"""The benchmark's memory probe sees memory that is touched, in this process and its workers."""

from __future__ import annotations

import json
import multiprocessing
import time

import numpy as np
import pandas as pd
import pytest

from kit import bench, bench_gp, cli, gpfeatures
from kit.bench import PeakMemory

MB = 2**20


def _touch(n_bytes: int, hold_s: float = 0.0) -> None:
    block = np.ones(n_bytes, dtype=np.uint8)
    time.sleep(hold_s)  # longer than the probe's polling interval
    block.sum()


def test_peak_memory_counts_this_process_and_children():
    with PeakMemory() as before:
        pass
    with PeakMemory() as here:
        _touch(200 * MB, 0.5)
    assert here.pss - before.pss > 150 * MB and here.rss >= here.pss
    with PeakMemory() as children:
        ctx = multiprocessing.get_context("spawn")
        procs = [ctx.Process(target=_touch, args=(300 * MB, 0.5)) for _ in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
    assert children.pss - before.pss > 300 * MB


def test_gp_stage_alone_writes_its_fields(tmp_path, capsys):
    """`bench --stages gp` at a tiny size: the GP stage at N and 2N and the scikit-learn reference, nothing else."""
    bench_dir = tmp_path / "bench"
    args = ["bench", "--stages", "gp", "--gp-rows", "2000", "--gp-reference-objects", "4", "--bench-dir",
            str(bench_dir), "--workers", "1"]
    assert cli.main(args) == 0
    assert "GP reference (scikit-learn" in capsys.readouterr().out
    summary = json.loads((bench_dir / "results.json").read_text())
    assert summary["stages"] == ["gp"] and "results" not in summary  # the LightGBM path was not run
    gp = summary["gp"]
    n, n2 = gp["runs"]
    for run in (n, n2):
        assert run["objects"] > 0 and run["seconds"] > 0 and run["peak_pss_mb"] > 0 and 0 <= run["ddf_share"] < 0.2
        assert run["objects_per_s_per_core"] == pytest.approx(run["objects_per_s"] / run["cores"])
    assert n2["rows"] > 1.9 * n["rows"] and n2["objects"] > n["objects"]
    assert gp["memory_2n_over_n"] == pytest.approx(n2["peak_pss_mb"] / n["peak_pss_mb"])
    assert gp["extrapolated_full_test_s"] == pytest.approx(
        bench.REAL_TEST_OBJECTS / (n2["objects_per_s_per_core"] * bench_gp.EXTRAPOLATION_CORES))
    ref = gp["reference"]
    assert ref["objects"] == 4 and ref["reference_s_per_object"] > 0 and ref["kit_s_per_object"] > 0
    assert ref["speedup_per_core"] == pytest.approx(ref["reference_s_per_object"] / ref["kit_s_per_object"])
    assert ref["loglik_gap_median"] > -0.5 and 0 <= ref["share_within_half_nat"] <= 1
    assert set(ref["features"]) == {g for g, _ in bench_gp.FEATURE_GROUPS}
    for group in ref["features"].values():
        assert 0 <= group["median_rel_diff"] <= group["p90_rel_diff"] <= 2


def test_every_gp_feature_has_a_group_and_differences_are_relative():
    assert {bench_gp.feature_group(c) for c in gpfeatures.gp_feature_names()} == {g for g, _ in bench_gp.FEATURE_GROUPS}
    ids = [10, 11, 12, 13]
    kit = pd.DataFrame({"gp_peak": [1.0, 2.0, 0.0, np.nan], "gp_colour_ug": [0.5, -0.5, np.nan, 1.0]}, index=ids)
    ref = pd.DataFrame({"gp_peak": [1.0, 1.0, 0.0, np.nan], "gp_colour_ug": [0.25, 0.5, 1.0, 1.0]}, index=ids)
    d = bench_gp.relative_differences(kit, ref.iloc[::-1])  # the same objects in another order
    assert d["peak and minimum"]["values"] == 3 and d["peak and minimum"]["median_rel_diff"] == 0.0
    assert d["peak and minimum"]["p90_rel_diff"] == pytest.approx(0.4)  # 0, 0, 0.5
    assert d["colours"]["nan_mismatch_share"] == 0.25
    assert d["colours"]["median_rel_diff"] == pytest.approx(0.5)  # 0.5, 2, 0


def test_stages_option_is_checked():
    parser = cli.build_parser("bench")
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "--stages", "gp,nonsense"])
    assert parser.parse_args(["bench", "--stages", "gp"]).stages == ("gp",)


def test_dmdt_stage_alone_writes_its_fields(tmp_path, capsys):
    """`bench --stages dmdt`, tiny: objects/s per core, bytes per object and the extrapolation, nothing else."""
    from kit import bench_dmdt, dmdt

    bench_dir = tmp_path / "bench"
    assert cli.main(["bench", "--stages", "dmdt", "--dmdt-rows", "20000", "--bench-dir", str(bench_dir),
                     "--workers", "1"]) == 0
    assert "objects/s per core" in capsys.readouterr().out
    summary = json.loads((bench_dir / "results.json").read_text())
    assert summary["stages"] == ["dmdt"] and "results" not in summary and "gp" not in summary
    d = summary["dmdt"]
    assert d["objects"] > 100 and d["rows"] >= 20000 and 2000 < d["pairs_per_object"] < 20000
    assert d["objects_per_s_per_core"] == pytest.approx(d["objects"] / d["seconds_one_core"])
    assert d["seconds_one_core"] == min(d["all_seconds_one_core"])
    assert d["bytes_per_object"] == 24 * 24 * 11 * 4 == dmdt.BYTES_PER_OBJECT
    assert d["disk_bytes_per_million_objects"] == 0
    assert d["extrapolated_full_test_s"] == pytest.approx(
        bench.REAL_TEST_OBJECTS / (d["objects_per_s_per_core"] * bench_dmdt.EXTRAPOLATION_CORES))
