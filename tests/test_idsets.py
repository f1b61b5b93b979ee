"""Id set operations agree with numpy's, sorted input or not."""

from __future__ import annotations

import numpy as np

from kit import idsets


def test_agree_with_numpy_on_sorted_unsorted_and_repeated_ids():
    rng = np.random.default_rng(0)
    cases = [np.arange(0, 300, 3), rng.integers(0, 50, 200), np.array([], dtype=np.int64), np.array([7, 7, 7])]
    for a in cases:
        for b in cases:
            u, c = idsets.unique_counts(a)
            want_u, want_c = np.unique(a, return_counts=True)
            np.testing.assert_array_equal(u, want_u)
            np.testing.assert_array_equal(c, want_c)
            np.testing.assert_array_equal(idsets.absent(a, b), np.setdiff1d(a, b))
            np.testing.assert_array_equal(idsets.merge(a, b), np.union1d(a, b))
    assert idsets.is_sorted(np.array([1, 1, 2])) and not idsets.is_sorted(np.array([1, 1, 2]), strict=True)
