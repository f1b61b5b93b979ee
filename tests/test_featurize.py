"""The `features` stage: train with target, test in resumable parts, parallel == serial, warnings."""

from __future__ import annotations

import gzip
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kit import bench, cli, featurize, survey
from kit.bench import write_synthetic
from kit.config import Config
from kit.errors import InputError, KitError

CHUNK_ROWS = 1_500


def _competition(folder: Path, rows: int = 9_000, extra_meta: int = 0) -> Path:
    write_synthetic(folder, rows, seed=11, metadata_extra=extra_meta)
    train = folder / "train_src"
    lc, meta = write_synthetic(train, 3_000, seed=12)
    shutil.move(lc, folder / survey.TRAIN_LIGHTCURVES)
    frame = pd.read_csv(meta)
    frame[survey.TARGET] = np.resize(survey.CLASSES, len(frame))
    frame.to_csv(folder / survey.TRAIN_METADATA, index=False)
    shutil.rmtree(train)
    return folder


@pytest.fixture(scope="module")
def comp(tmp_path_factory) -> Path:
    return _competition(tmp_path_factory.mktemp("comp") / "synth")


def _config(comp: Path, build: Path, **kw) -> Config:
    return Config(data_dir=comp, build_root=build, **{"chunk_rows": CHUNK_ROWS, "workers": 1, **kw})


def test_train_features_keep_target(comp, tmp_path):
    config = _config(comp, tmp_path)
    frame = pd.read_parquet(featurize.build_train(config))
    meta = pd.read_csv(config.train_metadata)
    assert frame[survey.OBJECT_ID].tolist() == sorted(meta[survey.OBJECT_ID])
    assert frame.set_index(survey.OBJECT_ID)[survey.TARGET].equals(
        meta.set_index(survey.OBJECT_ID)[survey.TARGET].astype(np.int16))
    assert "hostgal_photoz" in frame and "hostgal_specz" not in frame


def test_parallel_and_gz_equal_serial_and_whole(comp, tmp_path):
    serial = _config(comp, tmp_path / "serial")
    two = serial.with_(build_root=tmp_path / "two", workers=2)
    expected = pd.read_parquet(featurize.build_test(serial))
    assert len(list((serial.build_dir / "features_test.parts").glob("part-*.parquet"))) >= 5
    pd.testing.assert_frame_equal(pd.read_parquet(featurize.build_test(two)), expected, check_exact=True)
    gz_folder = tmp_path / "gz" / comp.name
    gz_folder.mkdir(parents=True)
    shutil.copy(serial.test_metadata, gz_folder)
    with open(serial.test_lightcurves, "rb") as src, gzip.open(gz_folder / "test_set.csv.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    gz = serial.with_(data_dir=gz_folder, build_root=tmp_path / "gzbuild", workers=2)
    pd.testing.assert_frame_equal(pd.read_parquet(featurize.build_test(gz)), expected, check_exact=True)
    lc = featurize.lightcurves.read_lightcurves(serial.test_lightcurves)
    whole = featurize.feature_builder("aggregate")(lc, featurize.data.read_metadata(serial.test_metadata))
    pd.testing.assert_frame_equal(expected.set_index(survey.OBJECT_ID), whole, check_exact=True)


def test_resume_skips_finished_parts_and_redoes_stale_ones(comp, tmp_path, caplog):
    config = _config(comp, tmp_path)
    out = featurize.build_test(config)
    expected = pd.read_parquet(out)
    parts = sorted((config.build_dir / "features_test.parts").glob("part-*.parquet"))
    stamps = {p: p.stat().st_mtime_ns for p in parts}
    parts[1].unlink()
    out.unlink()
    with caplog.at_level(logging.INFO):
        featurize.build_test(config)
    assert f"{len(parts) - 1} finished part(s) kept" in caplog.text
    assert all(p.stat().st_mtime_ns == stamps[p] for p in parts if p != parts[1])
    pd.testing.assert_frame_equal(pd.read_parquet(out), expected)
    # newer inputs make every part stale: all are made again (under a new key) and the old ones removed
    later = max(stamps.values()) / 1e9 + 10
    os.utime(config.test_lightcurves, (later, later))
    featurize.build_test(config)
    again = sorted((config.build_dir / "features_test.parts").glob("part-*.parquet"))
    assert len(again) == len(parts) and not set(again) & set(parts)
    pd.testing.assert_frame_equal(pd.read_parquet(out), expected)


def test_overlap_warnings_and_empty_overlap_error(tmp_path, caplog):
    comp = _competition(tmp_path / "c" / "warn", rows=3_000, extra_meta=4)
    config = _config(comp, tmp_path / "b")
    with caplog.at_level(logging.WARNING):
        featurize.build_test(config)
    assert "4 object(s) of" in caplog.text and "have no light-curve rows" in caplog.text
    meta = pd.read_csv(config.test_metadata)
    meta[survey.OBJECT_ID] += 10**6
    meta.to_csv(config.test_metadata, index=False)
    with pytest.raises(InputError, match="share no object_id"):
        featurize.build_test(config, force=True)


def test_file_in_descending_object_order_gives_sorted_features(comp, tmp_path):
    expected = pd.read_parquet(featurize.build_test(_config(comp, tmp_path / "sorted")))
    folder = tmp_path / "reversed" / comp.name
    folder.mkdir(parents=True)
    shutil.copy(comp / survey.TEST_METADATA, folder)
    lc = pd.read_csv(comp / survey.TEST_LIGHTCURVES, dtype=str)
    lc["rank"] = -lc.groupby(survey.OBJECT_ID, sort=False).ngroup()
    lc.sort_values("rank", kind="stable").drop(columns="rank").to_csv(folder / survey.TEST_LIGHTCURVES, index=False)
    got = pd.read_parquet(featurize.build_test(_config(folder, tmp_path / "b", workers=2)))
    pd.testing.assert_frame_equal(got, expected, check_exact=True)


def test_object_split_across_parts_is_an_input_error(tmp_path):
    folder = tmp_path / "split"
    lc, _ = write_synthetic(folder, 3_000, seed=2)
    lines = lc.read_text().splitlines(keepends=True)
    lc.write_text("".join(lines + [lines[1]]))  # first object's row again at the end
    config = _config(folder, tmp_path / "b")
    with pytest.raises(InputError, match="not contiguous"):
        featurize.build_test(config.with_(chunk_rows=500))


def test_cli_command_and_bench_small(comp, tmp_path, capsys):
    args = ["features", "--data", str(comp), "--build-root", str(tmp_path), "--workers", "1"]
    assert cli.main(args) == 0
    assert Config(data_dir=comp, build_root=tmp_path).features_path("test").exists()
    bench_dir = tmp_path / "bench"
    args = ["bench", "--rows", "20000", "--skip-2n", "--bench-dir", str(bench_dir), "--workers", "2",
            "--model-objects", "200", "--repeat", "2", "--metadata-rows", "3000", "--stages", "lgbm"]
    assert cli.main(args) == 0
    text = capsys.readouterr().out
    assert "public kernel" in text and "extrapolated" in text
    results = bench.json.loads((bench_dir / "results.json").read_text())["results"]
    kit_run = next(r for r in results if r["stage"].startswith("kit features ("))
    assert {r["stage"].split(" (")[0] for r in results} == {
        "kit features", "kit features, 3,000-row metadata", "public kernel", "fold models predict",
        "class 99 + write .csv.gz", "validate .csv.gz",
        "LightGBM path, CSV to validated file", "sequences"}
    seqs = next(r for r in results if r["stage"].startswith("sequences"))
    assert seqs["objects"] == kit_run["objects"] and 30 < seqs["mb_per_million_rows"] < 60
    assert len(kit_run["all_seconds"]) == 2 and kit_run["seconds"] == min(kit_run["all_seconds"])
    written = next(r for r in results if r["stage"] == "class 99 + write .csv.gz")
    assert written["objects"] == next(r for r in results if r["stage"].startswith("kit"))["objects"]


def test_a_second_run_is_refused_while_the_first_holds_the_build_folder(comp, tmp_path):
    config = _config(comp, tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(config.build_dir), featurize.LOCK_NAME],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(KitError, match=rf"in use by another `features` run: pid {holder.pid} on host .*"
                                           r"running `.*-c .*` since \d{4}-\d\d-\d\d"):
            featurize.build_test(config)
        assert not config.features_path("test").exists()
    finally:
        holder.kill()  # dies holding the lock: its record stays in the lock file, stale
        holder.wait()
    assert str(holder.pid) in (config.build_dir / ".features.lock").read_text()
    assert pd.read_parquet(featurize.build_test(config)).shape[0] > 0  # a dead holder blocks nothing


HOLD_LOCK = (
    "import sys, time; from kit.files import folder_lock; held = folder_lock(sys.argv[1], sys.argv[2]); "
    "held.__enter__(); "
    "print('locked', flush=True); time.sleep(600)"
)


def test_parts_left_by_a_run_with_other_settings_are_redone_not_blamed_on_the_input(comp, tmp_path):
    config = _config(comp, tmp_path)
    parts_dir = config.build_dir / "features_test.parts"
    other = config.with_(chunk_rows=500)  # more, smaller parts over the same objects
    featurize.build_test(other)
    strays = {p.name: p.read_bytes() for p in parts_dir.glob("part-*.parquet")}
    expected = pd.read_parquet(featurize.build_test(config, force=True))
    config.features_path("test").unlink()
    for i, (name, content) in enumerate(sorted(strays.items())):  # what a concurrent run with other settings left
        (parts_dir / name).write_bytes(content)
        (parts_dir / f"part-{i:05d}.parquet").write_bytes(content)  # and under the names of the kit before keys
    got = pd.read_parquet(featurize.build_test(config))
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    left = set(os.listdir(parts_dir))
    assert not left & set(strays) and "part-00000.parquet" not in left


def _variant(comp: Path, folder: Path, lightcurves=None, metadata=None) -> Path:
    folder.mkdir(parents=True)
    for name in (survey.TRAIN_LIGHTCURVES, survey.TRAIN_METADATA, survey.TEST_LIGHTCURVES, survey.TEST_METADATA):
        shutil.copy(comp / name, folder / name)
    if lightcurves is not None:
        lightcurves(folder / survey.TEST_LIGHTCURVES)
    if metadata is not None:
        metadata(folder / survey.TEST_METADATA)
    return folder


def _keep_lines(path: Path, keep) -> None:
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + "".join(line for line in lines[1:] if keep(int(line.split(",", 1)[0]))))


def test_header_only_test_set_fails_at_the_features_stage(comp, tmp_path):
    folder = _variant(comp, tmp_path / "empty", lightcurves=lambda p: _keep_lines(p, lambda oid: False))
    with pytest.raises(InputError, match=r"test_set\.csv: no light-curve rows \(a header only\?\)"):
        featurize.build_test(_config(folder, tmp_path / "b"))
    assert not _config(folder, tmp_path / "b").features_path("test").exists()


def test_test_objects_without_metadata_fail_at_the_features_stage_with_their_ids(comp, tmp_path):
    meta_ids = pd.read_csv(comp / survey.TEST_METADATA)[survey.OBJECT_ID]
    dropped = sorted(meta_ids)[:3]
    folder = _variant(comp, tmp_path / "nometa", metadata=lambda p: _keep_lines(p, lambda oid: oid not in dropped))
    examples = re.escape(str(dropped))
    with pytest.raises(InputError, match=rf"3 object\(s\) of .*test_set\.csv have no row in .*\(e\.g\. {examples}\)"):
        featurize.build_test(_config(folder, tmp_path / "b"))


def test_training_metadata_without_light_curves_fails_at_the_features_stage(comp, tmp_path):
    folder = _variant(comp, tmp_path / "nolc")
    ids = sorted(pd.read_csv(folder / survey.TRAIN_METADATA)[survey.OBJECT_ID])
    _keep_lines(folder / survey.TRAIN_LIGHTCURVES, lambda oid: oid != ids[1])
    with pytest.raises(InputError, match=rf"1 object\(s\) of .*training_set_metadata\.csv have no light-curve rows"
                                         rf".*\[{ids[1]}\].*folds and every model"):
        featurize.build_train(_config(folder, tmp_path / "b"))


def test_two_data_folders_with_one_name_do_not_share_the_build_folder(comp, tmp_path, capsys):
    first = _variant(comp, tmp_path / "a" / "base")
    second = _variant(comp, tmp_path / "b" / "base")
    common = ["--build-root", str(tmp_path / "build"), "--models-root", str(tmp_path / "models"), "--workers", "1"]
    assert cli.main(["features", "--data", str(first), *common]) == 0
    assert cli.main(["features", "--data", str(second), *common]) == 2
    err = capsys.readouterr().err
    assert f"holds what was made from the data folder {first.resolve()}, not from {second.resolve()}" in err
    assert "another name" in err and "make clean" in err
    predict = ["predict", "--model", "prior", *common]
    assert cli.main([*predict, "--data", str(second)]) == 2  # models/ are checked against build/ too
    assert cli.main([*predict, "--data", str(first)]) == 0
    assert (tmp_path / "models" / "base" / "source.json").exists()


def test_gp_feature_set_in_parts_equals_whole_and_resumes(comp, tmp_path):
    from kit.gpfeatures import build_gp_features

    serial = _config(comp, tmp_path / "serial")
    two = serial.with_(build_root=tmp_path / "two", workers=2)
    path = featurize.build_test(serial, kind="gp")
    assert path == serial.build_dir / "gp_features_test.parquet"
    expected = pd.read_parquet(path)
    assert len(list((serial.build_dir / "gp_features_test.parts").glob("part-*.parquet"))) >= 5
    pd.testing.assert_frame_equal(pd.read_parquet(featurize.build_test(two, kind="gp")), expected, check_exact=True)
    lc = featurize.lightcurves.read_lightcurves(serial.test_lightcurves)
    whole = build_gp_features(lc, featurize.data.read_metadata(serial.test_metadata))
    pd.testing.assert_frame_equal(expected.set_index(survey.OBJECT_ID), whole, check_exact=True)
    assert not (serial.build_dir / "features_test.parquet").exists()  # the sets are built apart
    featurize.build_train(serial, kind="gp")
    featurize.build_train(serial)
    train = featurize.load_train_features(serial, ("aggregate", "gp"))
    assert survey.TARGET in train and "gp_time_scale" in train
    assert "flux_mean" in train and train.columns.is_unique


def test_train_features_on_two_workers_equal_one(comp, tmp_path):
    one = pd.read_parquet(featurize.build_train(_config(comp, tmp_path / "one")))
    two = pd.read_parquet(featurize.build_train(_config(comp, tmp_path / "two", workers=2)))
    pd.testing.assert_frame_equal(two, one, check_exact=True)
