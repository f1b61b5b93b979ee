"""dmdt images: a hand-made light curve gives the hand-computed histogram; an object's image depends on its rows only;
the CNN subtracts the mean training image when asked."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest

from kit import dmdt
from kit.sequences import load_sequences, sequence_features

G, R, GR = 1, 2, 7  # channels: passband g, passband r, colour r-g


def _frame(rows, object_id=1):
    """Light-curve rows (mjd, passband, flux) of one object."""
    mjd, band, flux = (np.array(c, dtype=float) for c in zip(*rows, strict=True))
    return pd.DataFrame({"object_id": object_id, "mjd": 60000.0 + mjd, "passband": band.astype(int), "flux": flux,
                         "flux_err": 1.0, "detected": 1})


def _images_of(frame, index=None):
    _, offsets, values, _ = sequence_features(frame)
    return dmdt.dmdt_images(values, offsets, index)


def test_bins_are_the_documented_ones():
    night = [0, 1 / 96, 0.022593, 0.049003, 0.10628, 0.23052, 0.5, 1.0]
    np.testing.assert_allclose(dmdt.DT_EDGES_D[:8], night, rtol=1e-4)
    np.testing.assert_allclose(dmdt.DT_EDGES_D[7:], 1.51 ** np.arange(18), rtol=1e-2)
    assert dmdt.DT_EDGES_D[-1] == 1100.0 and dmdt.SHAPE == (24, 24, 11)
    assert dmdt.CHANNELS == ("u", "g", "r", "i", "z", "Y", "g-u", "r-g", "i-r", "z-i", "Y-z")
    plain = np.sinh(dmdt.DFLUX_EDGES) * dmdt.DFLUX_SOFTENING  # symmetric, 0 in the middle, all of [-2, 2]
    np.testing.assert_allclose(plain, -plain[::-1], atol=1e-12)
    assert plain[12] == pytest.approx(0) and plain[0] == pytest.approx(-2) and plain[-1] == pytest.approx(2)


def test_a_hand_made_light_curve_gives_the_hand_computed_histogram():
    # days, passband, flux; the object's max |flux| is 100, so fluxes / s are 0.5, 1, -0.25, 0.5
    image = _images_of(_frame([(0.0, G, 50), (0.03, R, 100), (2.0, G, -25), (10.0, R, 50)]))[0]
    # dt bins: 0.03 d in [0.0226, 0.0490) -> 2; 1.97 and 2 d in [1.51, 2.28) -> 8;
    #   8, 9.97 and 10 d in [7.84, 11.8) -> 12
    # dflux bins (edges in plain units: ... -1.214 | -0.737 | -0.447 ... 0 ... 0.447 | 0.737 | 1.214 | 2):
    #   -0.75 -> 1, -0.5 -> 2, 0 -> 12, 0.5 -> 21, 0.75 -> 22, 1.25 -> 23
    expected = np.zeros(dmdt.SHAPE, np.float32)
    expected[8, 1, G] = 1.0  # g: one pair, (0 d, 0.5) -> (2 d, -0.25): dt 2, dflux -0.75
    expected[12, 2, R] = 1.0  # r: one pair, (0.03 d, 1) -> (10 d, 0.5): dt 9.97, dflux -0.5
    # r-g, red minus blue, four pairs of a quarter each:
    expected[2, 21, GR] = 0.25  # r 0.03 d (1) - g 0 d (0.5): dt 0.03, dflux 0.5
    expected[12, 12, GR] = 0.25  # r 10 d (0.5) - g 0 d (0.5): dt 10, dflux 0
    expected[8, 23, GR] = 0.25  # r 0.03 d (1) - g 2 d (-0.25): dt 1.97, dflux 1.25
    expected[12, 22, GR] = 0.25  # r 10 d (0.5) - g 2 d (-0.25): dt 8, dflux 0.75
    np.testing.assert_array_equal(image, expected)  # u, i, z, Y and the other colours: no pair, all zero


def test_pixels_are_counts_over_the_channel_pairs():
    # three g points: three pairs, all in one (dt, dflux) bin pair by pair
    image = _images_of(_frame([(0.0, G, 10), (100.0, G, 10), (200.0, G, 10), (300.0, R, 5)]))[0]
    g = image[..., G]
    assert g.sum() == pytest.approx(1.0) and sorted(g[g > 0].tolist()) == pytest.approx([1 / 3, 2 / 3])
    assert image[..., R].sum() == 0  # one r point: no pair
    assert image[..., GR].sum() == pytest.approx(1.0)  # 3 x 1 colour pairs


@pytest.fixture(scope="module")
def train_sequences(competition, tmp_path_factory):
    from kit.lightcurves import iter_object_chunks
    from kit.sequences import build_sequences

    out = tmp_path_factory.mktemp("dmdt") / "seq"
    build_sequences(iter_object_chunks(competition / "training_set.csv", 50_000), out)
    return load_sequences(out)


def test_a_batch_equals_object_by_object_in_any_order_with_padding(train_sequences):
    seqs = train_sequences
    n = len(seqs)
    whole = dmdt.dmdt_images(seqs.values, seqs.offsets)
    assert whole.shape == (n, *dmdt.SHAPE) and whole.dtype == np.float32
    sums = whole.sum(axis=(1, 2))
    assert np.all((np.abs(sums - 1) < 1e-5) | (sums == 0)) and (sums[:, :6] > 0).mean() > 0.9
    one_by_one = np.stack([dmdt.dmdt_images(seqs.values, seqs.offsets, [i])[0] for i in range(0, n, 37)])
    np.testing.assert_array_equal(one_by_one, whole[::37])
    order = np.random.default_rng(0).permutation(n)[:50]
    np.testing.assert_array_equal(dmdt.dmdt_images(seqs.values, seqs.offsets, order), whole[order])
    with ThreadPoolExecutor(2) as pool:  # in threads at once (the compiled builder releases the GIL)
        parts = list(pool.map(lambda part: dmdt.dmdt_images(seqs.values, seqs.offsets, part),
                              np.array_split(np.arange(n), 4)))
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    # padding: an object's rows followed by all-zero rows (no passband) give its image
    padded, _ = seqs.pad(order[:5], max_len=1000)
    lengths = np.full(5, padded.shape[1])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    np.testing.assert_array_equal(dmdt.dmdt_images(padded.reshape(-1, padded.shape[2]), offsets), whole[order[:5]])


def test_mean_image_and_background_subtraction(train_sequences):
    pytest.importorskip("keras")
    from kit.models import cnn

    seqs = train_sequences
    index = np.arange(0, len(seqs), 3)
    images = dmdt.dmdt_images(seqs.values, seqs.offsets, index)
    background = dmdt.mean_image(seqs.values, seqs.offsets, index, batch_size=17)
    np.testing.assert_allclose(background, images.mean(axis=0), atol=1e-7)
    for bg in (None, background):
        model = cnn.build_model(cnn.DEMO, 3, bg)
        pixels = model.get_layer("pixels")(images[:8])
        want = images[:8] - (0 if bg is None else background)
        np.testing.assert_allclose(np.asarray(pixels), cnn.PIXEL_SCALE * want, atol=1e-5)


def test_streaming_refuses_a_cnn_trained_on_gp_features_before_reading_a_chunk(tmp_path):
    """Streamed chunks carry the aggregate features only; the refusal comes before any fold model is loaded."""
    from kit.config import Config
    from kit.errors import InputError
    from kit.files import write_json
    from kit.models import cnn

    config = Config(data_dir=tmp_path / "data" / "x", models_root=tmp_path / "models")
    out = config.model_dir("cnn")
    out.mkdir(parents=True)
    write_json(out / "settings.json", {"n_folds": 1, "settings": {"batch_size": 8, "features": ["aggregate", "gp"]}})
    with pytest.raises(InputError, match="streamed chunks make the aggregate set only"):
        cnn.Predictor(config)
