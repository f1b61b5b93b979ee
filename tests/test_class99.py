import numpy as np
import pytest

from kit import survey
from kit.class99 import add_class99, mask_by_group, wrong_group_rows

GAL_COLS = np.isin(survey.CLASSES, survey.GALACTIC_CLASSES)


def _random(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.ones(len(survey.CLASSES)), size=n), rng.random(n) < 0.4


def test_mask_zeroes_the_other_group_and_renormalises():
    proba, galactic = _random(50)
    masked = mask_by_group(proba, galactic)
    assert np.allclose(masked.sum(axis=1), 1)
    assert np.all(masked[galactic][:, ~GAL_COLS] == 0)
    assert np.all(masked[~galactic][:, GAL_COLS] == 0)
    # the allowed classes keep their relative sizes
    row = proba[0] * (GAL_COLS if galactic[0] else ~GAL_COLS)
    assert np.allclose(masked[0], row / row.sum())


def test_mask_row_without_allowed_mass_becomes_uniform():
    proba = np.zeros((1, 14))
    proba[0, list(survey.CLASSES).index(90)] = 1.0  # extragalactic class only
    masked = mask_by_group(proba, np.array([True]))
    assert np.allclose(masked[0, GAL_COLS], 1 / GAL_COLS.sum())
    assert np.all(masked[0, ~GAL_COLS] == 0)


def test_add_class99_group_means_equal_scales_and_rows_sum_to_one():
    proba, galactic = _random(200, seed=1)
    out = add_class99(mask_by_group(proba, galactic), galactic, 0.014, 0.14)
    assert out.shape == (200, 15)
    assert np.allclose(out.sum(axis=1), 1)
    assert out[galactic, -1].mean() == pytest.approx(0.014)
    assert out[~galactic, -1].mean() == pytest.approx(0.14)
    assert np.all(out[galactic][:, :14][:, ~GAL_COLS] == 0)
    assert np.all(out[~galactic][:, :14][:, GAL_COLS] == 0)


def test_add_class99_is_higher_for_uncertain_objects():
    confident = np.zeros(14)
    confident[list(survey.CLASSES).index(90)] = 0.97
    confident[list(survey.CLASSES).index(42)] = 0.03
    uncertain = np.where(~GAL_COLS, 1.0 / (~GAL_COLS).sum(), 0.0)
    out = add_class99(np.vstack([confident, uncertain]), np.array([False, False]), 0.0, 0.1)
    assert out[1, -1] > out[0, -1]
    assert out[:, -1].mean() == pytest.approx(0.1)


def test_add_class99_all_certain_group_gets_the_scale():
    proba = np.zeros((3, 14))
    proba[:, 0] = 1.0  # class 6, galactic, certain: prod(1 - p) = 0
    out = add_class99(proba, np.ones(3, bool), 0.02, 0.14)
    assert np.allclose(out[:, -1], 0.02)
    assert np.allclose(out.sum(axis=1), 1)


def test_add_class99_rejects_wrong_shape():
    with pytest.raises(ValueError, match="expected"):
        add_class99(np.ones((2, 13)), np.ones(2, bool), 0.1, 0.1)


def test_wrong_group_rows_are_those_the_mask_makes_uniform():
    proba, galactic = _random(6, seed=4)
    ext = list(survey.CLASSES).index(90)
    proba[0] = 0.0
    proba[0, ext] = 1.0  # galactic row with every bit of mass on an extragalactic class
    galactic[0] = True
    proba[1] = np.where(GAL_COLS, 0.0, proba[1])  # only extragalactic mass, and it is extragalactic: fine
    galactic[1] = False
    wrong = wrong_group_rows(proba, galactic)
    assert wrong.tolist() == [True] + [False] * 5
    uniform = np.allclose(mask_by_group(proba, galactic)[0, GAL_COLS], 1 / GAL_COLS.sum())
    assert uniform
