"""Metadata reading and the folder check: clear errors, not tracebacks."""

import gzip
import shutil

import pandas as pd
import pytest

from kit import cli, data, survey
from kit.config import Config
from kit.errors import InputError

HEADER = ",".join(survey.METADATA_COLUMNS) + ",target"


def write(path, text):
    path.write_text(text)
    return path


def test_reads_compact_dtypes(tmp_path):
    p = write(tmp_path / "m.csv", HEADER + "\n615,349.0,-61.9,320.8,-51.8,1,0,0,0,,0.017,92\n")
    frame = data.read_metadata(p, require_target=True)
    assert frame["object_id"].dtype == "int32" and frame["ddf"].dtype == "int8"
    assert frame["distmod"].isna().all()


def test_misspelled_column_is_named(tmp_path):
    p = write(tmp_path / "m.csv", HEADER.replace("hostgal_photoz,", "hostgal_photo_z,") + "\n")
    with pytest.raises(InputError, match=r"'hostgal_photoz' \(found 'hostgal_photo_z': misspelled\?\)"):
        data.read_metadata(p)


def test_bad_value_names_line_and_column(tmp_path):
    p = write(tmp_path / "m.csv", HEADER + "\n1,1,1,1,1,0,0,0,0,,0.1,90\n2,1,1,1,1,0,0,abc,0,,0.1,90\n")
    with pytest.raises(InputError, match=r"line 3, column 'hostgal_photoz': 'abc'"):
        data.read_metadata(p)


def test_missing_file_says_what_to_do(tmp_path):
    with pytest.raises(InputError, match="make download"):
        data.read_metadata(tmp_path / "nope.csv")


def test_duplicate_object_is_an_error(tmp_path):
    row = "1,1,1,1,1,0,0,0,0,,0.1,90\n"
    with pytest.raises(InputError, match="repeated at line"):
        data.read_metadata(write(tmp_path / "m.csv", HEADER + "\n" + row + row))


def test_unknown_label_is_an_error():
    with pytest.raises(InputError, match="unknown to PLAsTiCC"):
        data.labels(pd.DataFrame({"target": [90, 7]}))


def test_id_beyond_int32_names_line_and_column(tmp_path):
    rows = "".join(f"{i},1,1,1,1,0,0,0.5,0,,0.1,90\n" for i in range(1, 6000))
    rows = rows.replace("\n5000,", "\n3000000000,", 1)  # object 5000 is on line 5001
    with pytest.raises(InputError, match=r"m\.csv: line 5001, column 'object_id': '3000000000' is not an integer"):
        data.read_metadata(write(tmp_path / "m.csv", HEADER + "\n" + rows))


def test_missing_object_id_names_its_line(tmp_path):
    rows = "1,1,1,1,1,0,0,0.5,0,,0.1,90\n,1,1,1,1,0,0,0.5,0,,0.1,90\n"
    with pytest.raises(InputError, match=r"line 3, column 'object_id': '' is not an integer"):
        data.read_metadata(write(tmp_path / "m.csv", HEADER + "\n" + rows))


@pytest.mark.parametrize("cut", [0.5, 0.9])
def test_truncated_gz_metadata_says_download_again(tmp_path, cut):
    rows = "".join(f"{i},1,1,1,1,0,0,0.5,0,,0.1,90\n" for i in range(1, 20000))
    packed = gzip.compress((HEADER + "\n" + rows).encode())
    path = tmp_path / "m.csv.gz"
    path.write_bytes(packed[: int(len(packed) * cut)])
    with pytest.raises(InputError, match=r"m\.csv\.gz: the gzip file is truncated or corrupt.*Download it again"):
        data.read_metadata(path)


# --- check-data -----------------------------------------------------------------------------------
FILES = (survey.TRAIN_LIGHTCURVES, survey.TRAIN_METADATA, survey.TEST_LIGHTCURVES, survey.TEST_METADATA)


@pytest.fixture
def folder(competition, tmp_path):
    """A writable copy of the simulated competition."""
    out = tmp_path / competition.name
    out.mkdir()
    for name in FILES:
        shutil.copy(competition / name, out / name)
    return out


def _check(folder, quick=False):
    return data.check_folder(Config(data_dir=folder, chunk_rows=5_000), quick=quick)


def test_check_data_reads_everything_and_says_what_it_did_not_check(folder, capsys):
    checked, skipped = _check(folder)
    rows = sum(1 for _ in open(folder / survey.TEST_LIGHTCURVES)) - 1
    assert any(line.startswith(f"test_set.csv: read in full, {rows:,} rows of 800 objects") for line in checked)
    assert any("training_set.csv: read in full" in line for line in checked)
    assert skipped == [next(s for s in skipped if s.startswith("row counts against Kaggle's files"))]
    assert cli.main(["check-data", "--data", str(folder)]) == 0
    assert "not checked: row counts against Kaggle's" in capsys.readouterr().out
    _, skipped = _check(folder, quick=True)
    assert any(s.startswith("test_set.csv: only its header and end were read (--quick)") for s in skipped)


def test_check_data_finds_a_truncated_test_set(folder):
    path = folder / survey.TEST_LIGHTCURVES
    text = path.read_bytes()
    cut = text.index(b"\n", len(text) * 2 // 3) + 7  # 7 bytes into a row, whatever the simulated rows are
    path.write_bytes(text[:cut])
    with pytest.raises(InputError, match=r"test_set\.csv: line \d+ is cut mid-row"):
        _check(folder)
    with pytest.raises(InputError, match=r"test_set\.csv: the file ends in the middle of a row"):
        _check(folder, quick=True)


def test_check_data_finds_a_corrupt_gz_file(folder):
    path = folder / survey.TRAIN_LIGHTCURVES
    packed = gzip.compress(path.read_bytes())
    path.unlink()
    (folder / (survey.TRAIN_LIGHTCURVES + ".gz")).write_bytes(packed[: len(packed) - 100])
    with pytest.raises(InputError, match=r"training_set\.csv\.gz: the gzip file is truncated or corrupt"):
        _check(folder)


def test_check_data_compares_the_ids_of_light_curves_and_metadata(folder):
    meta = pd.read_csv(folder / survey.TEST_METADATA)
    meta.iloc[:-2].to_csv(folder / survey.TEST_METADATA, index=False)
    last = meta[survey.OBJECT_ID].iloc[-2:].tolist()
    with pytest.raises(InputError, match=rf"2 object\(s\) of .*test_set\.csv have no row in .*e\.g\. \[{last[0]}, "):
        _check(folder)


def test_check_data_counts_rows_only_for_the_real_competition(folder, monkeypatch):
    counts = {name: sum(1 for _ in open(folder / name)) - 1 for name in FILES}
    monkeypatch.setitem(survey.REAL_ROW_COUNTS, survey.TRAIN_METADATA, counts[survey.TRAIN_METADATA])
    train_rows = f"{counts[survey.TRAIN_LIGHTCURVES]:,}"
    with pytest.raises(InputError, match=r"the metadata's size says this is Kaggle's competition, but .*"
                                         rf"; training_set\.csv: {train_rows} rows, Kaggle's has 1,421,705"):
        _check(folder)
    for name in FILES:
        monkeypatch.setitem(survey.REAL_ROW_COUNTS, name, counts[name])
    checked, skipped = _check(folder)
    assert "row counts equal Kaggle's for" in checked[-1] and not skipped
    _, skipped = _check(folder, quick=True)
    assert skipped[-1] == "row count of test_set.csv (not read in full)"
