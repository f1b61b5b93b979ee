"""The one map interface: in process, local processes, Dask; and featurisation on a Dask cluster."""

from __future__ import annotations

import pandas as pd
import pytest

from kit import featurize, parallel
from kit.bench import write_synthetic
from kit.config import Config


def _square(x: int) -> int:
    return x * x


@pytest.mark.parametrize("workers", [1, 2])
def test_local_map_gives_every_result(workers):
    assert sorted(parallel.map_unordered(_square, iter(range(20)), workers)) == [x * x for x in range(20)]


def test_dask_cluster_gives_same_features_as_local(tmp_path):
    distributed = pytest.importorskip("distributed")
    folder = tmp_path / "sim"
    write_synthetic(folder, 6_000, seed=5)
    local = Config(data_dir=folder, build_root=tmp_path / "local", workers=1, chunk_rows=1_000)
    featurize.build_test(local)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cl:
        assert sorted(parallel.map_unordered(_square, range(5), 1, cl.scheduler_address)) == [0, 1, 4, 9, 16]
        on_dask = local.with_(build_root=tmp_path / "dask", scheduler=cl.scheduler_address)
        featurize.build_test(on_dask)
    pd.testing.assert_frame_equal(
        pd.read_parquet(on_dask.features_path("test")), pd.read_parquet(local.features_path("test")), check_exact=True
    )
