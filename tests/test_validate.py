import gzip

import numpy as np
import pandas as pd
import pytest

from kit import cli, survey
from kit.errors import InputError
from kit.validate import check_submission, validate_submission

IDS = [13, 14, 17, 23, 34, 45]
CLASS_COLS = list(survey.SUBMISSION_COLUMNS[1:])


@pytest.fixture
def meta(tmp_path):
    path = tmp_path / survey.TEST_METADATA
    pd.DataFrame({"object_id": IDS, "ddf": [1, 0, 0, 1, 0, 0], "hostgal_photoz": [0, 0, 0.3, 0.5, 0.1, 0]}).to_csv(
        path, index=False
    )
    return path


def _frame():
    p = np.full((len(IDS), 15), 1 / 15)
    frame = pd.DataFrame(p, columns=CLASS_COLS)
    frame.insert(0, "object_id", IDS)
    return frame


def _write(path, frame, compression="gzip"):
    frame.to_csv(path, index=False, compression=compression)
    return path


def _problems(tmp_path, meta, frame, name="s.csv.gz", compression="gzip"):
    return "\n".join(validate_submission(_write(tmp_path / name, frame, compression), meta))


def test_valid_file_passes(tmp_path, meta):
    path = _write(tmp_path / "s.csv.gz", _frame())
    assert validate_submission(path, meta) == []
    assert check_submission(path, meta) == len(IDS)


def test_plain_csv_named_gz(tmp_path, meta):
    assert "not gzip-compressed although named .gz" in _problems(tmp_path, meta, _frame(), compression=None)


def test_gzip_named_csv(tmp_path, meta):
    assert "gzip-compressed although not named .gz" in _problems(tmp_path, meta, _frame(), name="s.csv")


def test_binary_garbage(tmp_path, meta):
    path = tmp_path / "s.csv.gz"
    path.write_bytes(gzip.compress(bytes(range(256)) * 10))
    assert "not a CSV text file" in "\n".join(validate_submission(path, meta))


def test_empty_file(tmp_path, meta):
    path = tmp_path / "s.csv.gz"
    path.write_bytes(gzip.compress(b""))
    assert "empty file" in "\n".join(validate_submission(path, meta))


def test_unparseable_rows(tmp_path, meta):
    path = tmp_path / "s.csv.gz"
    text = _frame().to_csv(index=False) + "99,0.5\n"
    path.write_bytes(gzip.compress(text.encode()))
    assert "not a parseable CSV" in "\n".join(validate_submission(path, meta))


def test_non_numeric_value(tmp_path, meta):
    frame = _frame().astype({"class_90": object})
    frame.loc[2, "class_90"] = "high"
    assert "not a parseable CSV" in _problems(tmp_path, meta, frame)


def test_missing_column(tmp_path, meta):
    out = _problems(tmp_path, meta, _frame().drop(columns="class_99"))
    assert "missing columns ['class_99']" in out and "expected header" in out


def test_extra_column(tmp_path, meta):
    frame = _frame()
    frame["class_100"] = 0.0
    assert "unexpected columns ['class_100']" in _problems(tmp_path, meta, frame)


def test_misordered_columns(tmp_path, meta):
    frame = _frame()
    cols = list(frame.columns)
    cols[1], cols[2] = cols[2], cols[1]
    out = _problems(tmp_path, meta, frame[cols])
    assert "columns in the wrong order" in out and "object_id,class_15,class_6" in out


def test_missing_object_ids_and_row_count(tmp_path, meta):
    out = _problems(tmp_path, meta, _frame().iloc[:-1])
    assert "object_ids of the test metadata missing (1): [45]" in out
    assert "wrong row count: 5 rows for 6 test objects" in out


def test_duplicate_object_ids(tmp_path, meta):
    frame = _frame()
    frame.loc[1, "object_id"] = 13
    out = _problems(tmp_path, meta, frame)
    assert "duplicate object_ids (1): [13]" in out


def test_unknown_object_ids(tmp_path, meta):
    frame = pd.concat([_frame(), _frame().iloc[[0]].assign(object_id=999)])
    out = _problems(tmp_path, meta, frame)
    assert "object_ids not in the test metadata (1): [999]" in out


def test_nan_values(tmp_path, meta):
    frame = _frame()
    frame.loc[3, "class_42"] = np.nan
    assert "NaN or empty values in 1 rows; object_ids [23] (lines [5])" in _problems(tmp_path, meta, frame)


def test_infinite_values(tmp_path, meta):
    frame = _frame()
    frame.loc[4, "class_6"] = np.inf
    assert "infinite values in 1 rows; object_ids [34]" in _problems(tmp_path, meta, frame)


def test_negative_values(tmp_path, meta):
    frame = _frame()
    frame.loc[0, "class_99"] = -0.1
    assert "negative values in 1 rows; object_ids [13]" in _problems(tmp_path, meta, frame)


def test_values_above_one(tmp_path, meta):
    frame = _frame()
    frame.loc[5, "class_95"] = 1.5
    assert "values above 1 in 1 rows; object_ids [45]" in _problems(tmp_path, meta, frame)


def test_rows_summing_to_zero(tmp_path, meta):
    frame = _frame()
    frame.loc[1, CLASS_COLS] = 0.0
    assert "rows summing to 0 (1): object_ids [14]" in _problems(tmp_path, meta, frame)


def test_examples_are_capped(tmp_path, meta):
    frame = _frame()
    frame[CLASS_COLS] = -1.0
    out = validate_submission(_write(tmp_path / "s.csv.gz", frame), meta, max_examples=2)
    assert any("[13, 14, ... (6 in all)]" in p for p in out)


def test_check_submission_lists_every_problem(tmp_path, meta):
    frame = _frame()
    frame.loc[0, "class_6"] = np.nan
    frame.loc[1, "class_6"] = 2.0
    with pytest.raises(InputError, match=r"2 problems") as err:
        check_submission(_write(tmp_path / "s.csv.gz", frame), meta)
    assert "NaN" in str(err.value) and "above 1" in str(err.value)


def _cli_args(tmp_path, meta):
    return ["--data", str(meta.parent), "--submissions-dir", str(tmp_path / "subs")]


def test_validate_command_ok_on_newest_submission(tmp_path, meta, capsys):
    subs = tmp_path / "subs"
    subs.mkdir()
    _write(subs / f"{meta.parent.name}-lgbm.csv.gz", _frame())
    assert cli.main(["validate", *_cli_args(tmp_path, meta)]) == 0
    assert f"-lgbm.csv.gz: {len(IDS)} rows, 15 classes" in capsys.readouterr().out


def test_validate_command_exits_2_on_problems(tmp_path, meta, capsys):
    bad = _write(tmp_path / "bad.csv.gz", _frame().iloc[:-2])
    assert cli.main(["validate", *_cli_args(tmp_path, meta), "--file", str(bad)]) == 2
    assert "object_ids of the test metadata missing (2)" in capsys.readouterr().err
