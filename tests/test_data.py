"""Metadata reading and the folder check: clear errors, not tracebacks."""

import pandas as pd
import pytest

from kit import data, survey
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
