"""The stand-in server's own rules: the public/private split and scoring."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from kit import survey
from kit.standin import scoring


def test_public_share_is_about_a_third_and_fixed():
    ids = np.arange(100_000)
    public = scoring.is_public(ids)
    assert 0.32 < public.mean() < 0.36
    assert np.array_equal(public, scoring.is_public(ids))


def test_score_perfect_and_uniform():
    ids = np.arange(200)
    y = np.array(survey.SUBMISSION_CLASSES)[ids % 15]
    truth = pd.Series(y, index=ids)
    perfect = np.full((200, 15), 1e-6)
    perfect[np.arange(200), ids % 15] = 1.0
    frame = pd.DataFrame(perfect, columns=list(survey.SUBMISSION_COLUMNS[1:]))
    frame.insert(0, "object_id", ids)
    public, private = scoring.score(gzip.compress(frame.to_csv(index=False).encode()), truth)
    assert public < 1e-4 and private < 1e-4
    frame.iloc[:, 1:] = 1 / 15
    public, private = scoring.score(frame.to_csv(index=False).encode(), truth)
    assert public == pytest.approx(np.log(15)) and private == pytest.approx(np.log(15))
    with pytest.raises(ValueError, match="no row"):
        scoring.score(frame.iloc[:-1].to_csv(index=False).encode(), truth)
