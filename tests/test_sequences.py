"""Ragged sequences: step features, streaming storage round trip, length-bucketed batches."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kit.errors import InputError
from kit.sequences import (
    N_FEATURES,
    PAD_QUANTUM,
    build_sequences,
    iter_batches,
    length_batches,
    load_sequences,
    mixed_batches,
    sequence_features,
)


def fake_lightcurves(n_objects: int, seed: int = 0, min_len: int = 5, max_len: int = 60) -> pd.DataFrame:
    """Rows of ``n_objects`` objects, contiguous per object, mjd shuffled within each object."""
    rng = np.random.default_rng(seed)
    lens = rng.integers(min_len, max_len, n_objects)
    n = int(lens.sum())
    frame = pd.DataFrame({
        "object_id": np.repeat(np.arange(n_objects) * 7 + 3, lens).astype(np.int32),
        "mjd": rng.uniform(59580, 60675, n),
        "passband": rng.integers(0, 6, n).astype(np.int8),
        "flux": rng.normal(0, 20, n).astype(np.float32),
        "flux_err": rng.uniform(1, 5, n).astype(np.float32),
        "detected": rng.integers(0, 2, n).astype(np.int8),
    })
    return frame


def split_chunks(frame: pd.DataFrame, n_chunks: int) -> list[pd.DataFrame]:
    ids = frame["object_id"].unique()
    groups = np.array_split(ids, n_chunks)
    return [frame[frame["object_id"].isin(g)] for g in groups]


def test_step_features_of_one_object():
    frame = pd.DataFrame({
        "object_id": [5, 5, 5],
        "mjd": [10.0, 8.0, 11.5],
        "passband": [2, 0, 5],
        "flux": [-40.0, 10.0, 20.0],
        "flux_err": [4.0, 2.0, 2.0],
        "detected": [1, 0, 1],
    })
    ids, offsets, values, log_scale = sequence_features(frame)
    assert ids.tolist() == [5] and offsets.tolist() == [0, 3]
    assert log_scale[0] == pytest.approx(np.log(40.0))
    np.testing.assert_allclose(values[:, 0], np.log1p([0.0, 2.0, 1.5]), rtol=1e-6)  # sorted by mjd: 8, 10, 11.5
    np.testing.assert_allclose(values[:, 1], [0.25, -1.0, 0.5])
    np.testing.assert_allclose(values[:, 2], [0.05, 0.1, 0.05])
    np.testing.assert_array_equal(values[:, 3], [0, 1, 1])
    np.testing.assert_array_equal(values[:, 4:].argmax(axis=1), [0, 2, 5])
    assert values.shape == (3, N_FEATURES) and values.dtype == np.float32


def test_chunked_build_equals_whole_and_round_trips(tmp_path):
    frame = fake_lightcurves(40)
    whole = build_sequences([frame], tmp_path / "whole")
    chunked = build_sequences(split_chunks(frame, 3), tmp_path / "chunked")
    assert whole["n_rows"] == chunked["n_rows"] == len(frame)
    a, b = load_sequences(tmp_path / "whole"), load_sequences(tmp_path / "chunked")
    assert isinstance(b.values, np.memmap)
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.offsets, b.offsets)
    np.testing.assert_array_equal(a.object_ids, b.object_ids)
    ids, offsets, values, log_scale = sequence_features(frame)
    np.testing.assert_array_equal(b.values, values)
    np.testing.assert_array_equal(b.log_scale, log_scale)
    assert sorted(p.name for p in (tmp_path / "chunked").iterdir() if p.name.startswith(".")) == [".done"]
    assert not list(tmp_path.glob(".*tmp"))
    # on disk: 40 bytes per row, plus a little per object and the headers
    assert 40 * len(frame) < whole["bytes"] < 40 * len(frame) + 20 * 40 + 2048


def test_first_objects_build_cuts_whole_objects_across_chunks(tmp_path):
    """max_objects: exactly the first N objects in file order, whichever chunk they end in; meta.json says so."""
    frame = fake_lightcurves(40)
    first = frame["object_id"].drop_duplicates().to_numpy()
    for n in (1, 7, 13, 40, 90):
        stats = build_sequences(split_chunks(frame, 3), tmp_path / f"first{n}", max_objects=n)
        part = load_sequences(tmp_path / f"first{n}")
        np.testing.assert_array_equal(part.object_ids, first[:n])
        whole = build_sequences([frame[frame["object_id"].isin(first[:n])]], tmp_path / f"whole{n}")
        assert stats["n_rows"] == whole["n_rows"] and stats["max_objects"] == n
        np.testing.assert_array_equal(part.values, load_sequences(tmp_path / f"whole{n}").values)


def test_failed_build_leaves_nothing(tmp_path):
    def chunks():
        yield fake_lightcurves(3)
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        build_sequences(chunks(), tmp_path / "seq")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InputError):
        load_sequences(tmp_path / "seq")


def test_buckets_pad_to_their_own_longest_and_yield_everything_once(tmp_path):
    frame = fake_lightcurves(103, seed=1, max_len=80)
    build_sequences(split_chunks(frame, 2), tmp_path / "seq")
    seqs = load_sequences(tmp_path / "seq")
    index = np.arange(3, 103)  # a subset, as for one fold
    seen, widths = [], []
    for positions, x, mask in iter_batches(seqs, index, batch_size=16, max_len=50, rng=np.random.default_rng(0)):
        lens = np.minimum(seqs.lengths[index[positions]], 50)
        rounded = min(-(-lens.max() // PAD_QUANTUM) * PAD_QUANTUM, 50)  # the batch's longest, rounded up
        assert x.shape == (len(positions), rounded, N_FEATURES)
        np.testing.assert_array_equal(mask.sum(axis=1), lens)
        assert np.all(x[~mask] == 0) and np.all(x[mask][:, 4:].sum(axis=1) == 1)
        first = seqs.offsets[index[positions[0]]]
        np.testing.assert_array_equal(x[0, : lens[0]], seqs.values[first : first + lens[0]])  # first steps kept
        seen.extend(positions.tolist())
        widths.append(x.shape[1])
    assert sorted(seen) == list(range(len(index)))
    assert len(set(widths)) > 1 and max(widths) == 50


def test_length_batches_deterministic_without_rng():
    lengths = np.array([5, 1, 9, 3, 7])
    batches = length_batches(lengths, 2)
    assert [b.tolist() for b in batches] == [[1, 3], [0, 4], [2]]


def test_positions_names_a_missing_object(tmp_path):
    build_sequences([fake_lightcurves(4)], tmp_path / "seq")
    seqs = load_sequences(tmp_path / "seq")
    np.testing.assert_array_equal(seqs.positions(seqs.object_ids[::-1]), [3, 2, 1, 0])
    with pytest.raises(InputError, match="object 999"):
        seqs.positions([seqs.object_ids[0], 999])


def _kinds_per_batch(batches, long):
    return [set(long[b].tolist()) for b in batches]


def test_training_batches_mix_short_and_long_objects():
    """Sorted by length, batches hold one kind only (WFD ~ short, DDF ~ long); mixed batches hold both."""
    rng = np.random.default_rng(0)
    long = rng.random(2000) < 0.3  # a DDF-like share of long sequences
    lengths = np.where(long, rng.integers(250, 352, 2000), rng.integers(30, 120, 2000))
    sorted_batches = length_batches(lengths, 64, rng=np.random.default_rng(1))
    pure_sorted = np.mean([len(k) == 1 for k in _kinds_per_batch(sorted_batches, long)])
    assert pure_sorted > 0.9
    for buckets, mix in ((1, 0.0), (2, 0.5)):
        batches = mixed_batches(lengths, 64, np.random.default_rng(2), buckets=buckets, mix=mix)
        assert sorted(np.concatenate(batches).tolist()) == list(range(2000))  # every object once
        full = [b for b in batches if len(b) == 64]
        assert np.mean([len(k) == 2 for k in _kinds_per_batch(full, long)]) == 1.0, (buckets, mix)
        if buckets == 1:  # random batches: each holds about the overall share of long objects
            shares = np.array([long[b].mean() for b in full])
            assert abs(shares.mean() - long.mean()) < 0.02 and shares.min() > 0.1


def test_mixed_batches_have_the_same_count_every_epoch():
    """Keras fixes an epoch's steps from the first epoch: the count must not depend on the draw."""
    rng = np.random.default_rng(3)
    lengths = rng.integers(20, 352, 1000)
    for buckets, mix in ((1, 0.0), (4, 0.25), (3, 1.0)):
        for seed in range(20):
            batches = mixed_batches(lengths, 64, np.random.default_rng(seed), buckets=buckets, mix=mix)
            assert len(batches) == -(-1000 // 64), (buckets, mix, seed)
            assert sorted(np.concatenate(batches).tolist()) == list(range(1000))
            assert max(len(b) for b in batches) == 64


def test_random_batches_are_drawn_as_before():
    """One bucket (the CNN's batches) draws as the kit always did: shuffle, cut, shuffle the batch order."""
    rng = np.random.default_rng(5)
    members = rng.permutation(300)
    cut = [members[i : i + 64] for i in range(0, 300, 64)]
    expected = [cut[i] for i in rng.permutation(len(cut))]
    got = mixed_batches(np.zeros(300, np.int64), 64, np.random.default_rng(5))
    assert [b.tolist() for b in got] == [b.tolist() for b in expected]
