"""The competition metric against values worked out by hand."""

import math

import numpy as np
import pytest

from kit import class99, metric, survey


def test_uniform_submission_scores_ln15():
    y = np.array(survey.SUBMISSION_CLASSES)
    p = np.full((len(y), 15), 1 / 15)
    assert metric.weighted_log_loss(y, p, survey.SUBMISSION_CLASSES) == pytest.approx(math.log(15), abs=1e-12)


def test_hand_computed_weights_and_absent_classes():
    # classes 6 (w=1) twice and 15 (w=2) once; every other class absent from the truth.
    classes = survey.CLASSES
    y = np.array([6, 6, 15])
    p = np.full((3, 14), 0.01)
    p[0, classes.index(6)] = 0.5
    p[1, classes.index(6)] = 0.25
    p[2, classes.index(15)] = 0.8
    p = p / p.sum(axis=1, keepdims=True)  # the metric normalises rows itself; do it here to compute by hand
    l6 = -(math.log(p[0, 0]) + math.log(p[1, 0])) / 2
    l15 = -math.log(p[2, 1])
    expected = (1 * l6 + 2 * l15) / 3
    assert metric.weighted_log_loss(y, p) == pytest.approx(expected, rel=1e-12)


def test_rows_normalised_before_scoring():
    y = np.array([6, 15])
    p = np.eye(14)[[0, 1]] * 0.5 + 0.5 / 14
    assert metric.weighted_log_loss(y, p * 7.0) == pytest.approx(metric.weighted_log_loss(y, p), rel=1e-12)


def test_zero_probability_is_clipped_not_infinite():
    y = np.array([6])
    p = np.zeros((1, 14))
    p[0, 1] = 1.0
    assert metric.weighted_log_loss(y, p) == pytest.approx(-math.log(1e-15), rel=1e-9)


def test_sample_weights_make_weighted_mean_equal_metric():
    rng = np.random.default_rng(0)
    y = rng.choice(survey.CLASSES, size=500, p=np.linspace(1, 3, 14) / np.linspace(1, 3, 14).sum())
    p = rng.dirichlet(np.ones(14), size=500)
    w = metric.sample_weights(y)
    nll = -np.log(p[np.arange(500), np.searchsorted(survey.CLASSES, y)])
    assert np.average(nll, weights=w) == pytest.approx(metric.weighted_log_loss(y, p), rel=1e-10)


def test_contributions_add_up_to_metric():
    rng = np.random.default_rng(1)
    y = rng.choice(survey.CLASSES, size=300)
    p = rng.dirichlet(np.ones(14), size=300)
    assert sum(metric.class_contributions(y, p).values()) == pytest.approx(metric.weighted_log_loss(y, p))


def test_unknown_truth_class_is_an_error():
    with pytest.raises(ValueError, match="99"):
        metric.weighted_log_loss(np.array([99]), np.full((1, 14), 1 / 14))


def test_lgbm_eval_matches_metric():
    class FakeData:
        def get_label(self):
            return np.array([0, 1, 13], dtype=float)

    p = np.random.default_rng(2).dirichlet(np.ones(14), size=3)
    name, value, higher_better = metric.lgbm_eval(p, FakeData())
    assert (name, higher_better) == ("wloss", False)
    assert value == pytest.approx(metric.weighted_log_loss(np.array([6, 15, 95]), p))


def test_lgbm_eval_with_groups_scores_the_masked_probabilities():
    y = np.array([6, 15, 95, 65])
    galactic = np.isin(y, survey.GALACTIC_CLASSES)

    class FakeData:
        def get_label(self):
            return np.searchsorted(survey.CLASSES, y).astype(float)

    p = np.random.default_rng(3).dirichlet(np.ones(14), size=4)
    _, value, _ = metric.lgbm_eval(p, FakeData(), galactic=galactic)
    assert value == pytest.approx(metric.weighted_log_loss(y, class99.mask_by_group(p, galactic)))
    assert value < metric.weighted_log_loss(y, p) - 0.1
