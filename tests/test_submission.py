import gzip

import numpy as np
import pandas as pd
import pytest

from kit import cli, files, survey
from kit.submission import measure_rounding, round_significant, write_submission
from kit.validate import validate_submission

IDS = np.array([13, 14, 17, 23, 34, 45])
PHOTOZ = [0, 0, 0.3, 0.5, 0.1, 0]


def test_round_significant_keeps_small_values_positive():
    x = np.array([0.0, 1.0, 0.123456, 3.14159e-7, 2.5e-12, 0.99999])
    r = round_significant(x, 4)
    assert r[0] == 0
    assert np.all(r[1:] > 0)
    assert np.allclose(r[1:], x[1:], rtol=5e-4, atol=0)
    assert r[2] == 0.1235 and r[3] == 3.142e-7


def test_rounding_costs_almost_nothing():
    m = measure_rounding(n=20_000, seed=3)
    assert abs(m["cost"]) < 1e-3
    assert m["score_before"] > 0


def test_write_submission_header_and_values(tmp_path):
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(15), size=len(IDS))
    p[0, 3] = 1.234567e-9  # tiny: must not become 0
    p[1, 5] = 0.0
    path = write_submission(tmp_path / "s.csv.gz", IDS, p)
    with gzip.open(path, "rt") as f:
        assert f.readline().strip() == ",".join(survey.SUBMISSION_COLUMNS)
    back = pd.read_csv(path)
    assert back["object_id"].tolist() == IDS.tolist()
    values = back[list(survey.SUBMISSION_COLUMNS[1:])].to_numpy()
    assert values[0, 3] == pytest.approx(1.235e-9)
    assert values[1, 5] == 0
    assert np.allclose(values, p, rtol=5e-4, atol=1e-12)
    assert not list(tmp_path.glob(".*tmp"))


def test_write_submission_rejects_wrong_shape(tmp_path):
    with pytest.raises(ValueError, match="expected"):
        write_submission(tmp_path / "s.csv.gz", IDS, np.ones((len(IDS), 14)))


@pytest.fixture
def competition(tmp_path):
    data = tmp_path / "tiny"
    data.mkdir()
    meta = pd.DataFrame({"object_id": IDS, "ddf": 0, "hostgal_photoz": PHOTOZ})
    meta.to_csv(data / survey.TEST_METADATA, index=False)
    return data


def _args(tmp_path, data):
    return ["--data", str(data), "--models-root", str(tmp_path / "models"),
            "--submissions-dir", str(tmp_path / "subs")]


def _save(tmp_path, model, ids):
    rng = np.random.default_rng(1)
    files.save_proba(tmp_path / "models" / "tiny" / model / "test.parquet", ids, rng.dirichlet(np.ones(14), len(ids)))


def test_submission_command_writes_a_valid_masked_file(tmp_path, competition, capsys):
    _save(tmp_path, "lgbm", IDS[::-1])  # predictions in another order than the metadata
    assert cli.main(["submission", *_args(tmp_path, competition)]) == 0
    out = tmp_path / "subs" / "tiny-lgbm.csv.gz"
    assert str(out) in capsys.readouterr().out
    assert validate_submission(out, competition / survey.TEST_METADATA) == []
    sub = pd.read_csv(out)
    assert sub["object_id"].tolist() == IDS.tolist()
    galactic = np.asarray(PHOTOZ) == 0
    extra_cols = [survey.class_column(c) for c in survey.EXTRAGALACTIC_CLASSES]
    assert (sub.loc[galactic, extra_cols] == 0).all().all()
    assert np.allclose(sub.iloc[:, 1:].sum(axis=1), 1, atol=1e-3)


def test_submission_command_prefers_blend(tmp_path, competition):
    _save(tmp_path, "lgbm", IDS)
    _save(tmp_path, "blend", IDS)
    assert cli.main(["submission", *_args(tmp_path, competition)]) == 0
    assert (tmp_path / "subs" / "tiny-blend.csv.gz").exists()


def test_submission_command_rejects_mismatched_ids(tmp_path, competition, capsys):
    _save(tmp_path, "lgbm", np.append(IDS[:-1], 999))
    assert cli.main(["submission", *_args(tmp_path, competition)]) == 2
    err = capsys.readouterr().err
    assert "do not match" in err and "[45]" in err and "[999]" in err


def test_submission_command_class99_method(tmp_path, competition):
    from kit import class99

    _save(tmp_path, "lgbm", IDS)
    galactic = np.asarray(PHOTOZ) == 0
    _, proba = files.load_proba(tmp_path / "models" / "tiny" / "lgbm" / "test.parquet")
    other = "avocado" if class99.DEFAULT_METHOD != "avocado" else "third"
    assert cli.main(["submission", *_args(tmp_path, competition), "--class99", other]) == 0
    out = tmp_path / "subs" / f"tiny-lgbm-{other}.csv.gz"  # another method than the default: its own file
    assert validate_submission(out, competition / survey.TEST_METADATA) == []
    expected = class99.class99_probability(proba, galactic, other)
    assert np.allclose(pd.read_csv(out)["class_99"], expected, rtol=5e-4)
    assert not (tmp_path / "subs" / "tiny-lgbm.csv.gz").exists()
    # the default method keeps the plain name
    assert cli.main(["submission", *_args(tmp_path, competition)]) == 0
    default = pd.read_csv(tmp_path / "subs" / "tiny-lgbm.csv.gz")["class_99"]
    assert np.allclose(default, class99.class99_probability(proba, galactic, class99.DEFAULT_METHOD), rtol=5e-4)
    assert not np.allclose(default, expected, rtol=1e-2)
    with pytest.raises(SystemExit):  # argparse names the methods it knows
        cli.main(["submission", *_args(tmp_path, competition), "--class99", "fourth"])
