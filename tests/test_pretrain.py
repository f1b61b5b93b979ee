"""Pretraining and fine-tuning: the masked objective, no leak of masked points, resuming, the pretrained start,
frozen epochs, label fractions nested in the shared folds, and fine-tuning end to end."""

from __future__ import annotations

from dataclasses import asdict, replace

import numpy as np
import pytest

pytest.importorskip("keras")

from kit import lstm, metric, pretrain, survey  # noqa: E402
from kit.config import Config  # noqa: E402
from kit.errors import InputError  # noqa: E402
from kit.files import load_proba, read_json  # noqa: E402
from kit.folds import make_folds  # noqa: E402
from kit.lstm_model import LSTMSettings, keras  # noqa: E402
from kit.sequences import Sequences, build_sequences, load_sequences  # noqa: E402
from kit.transfer import Plan, label_mask  # noqa: E402
from tests.test_lstm import fake_features  # noqa: E402
from tests.test_sequences import fake_lightcurves  # noqa: E402

TINY = LSTMSettings(units=8, dense_units=(16, 8), dense_dropout=(0.25, 0.5), epochs=2, patience=2, batch_size=32,
                    max_len=48)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Config of a tiny competition's built inputs: 150 training and 200 test sequences, fake features."""
    root = tmp_path_factory.mktemp("pretrain")
    config = Config(data_dir=root / "data" / "tiny", build_root=root / "build", models_root=root / "models",
                    n_folds=2, seed=3, workers=1)
    for split, n, seed in (("train", 150, 0), ("test", 200, 1)):
        lc = fake_lightcurves(n, seed=seed, max_len=40)
        build_sequences([lc], config.sequences_dir(split))
        config.features_path(split).parent.mkdir(parents=True, exist_ok=True)
        fake_features(lc["object_id"].unique(), seed, split == "train").to_parquet(config.features_path(split),
                                                                                  index=False)
    return config


@pytest.fixture(scope="module")
def pretrained(tiny):
    return pretrain.pretrain(tiny, TINY, pretrain.PretrainOptions(epochs=1, max_objects=120))


# --- the objective ------------------------------------------------------------------------------------------------


def test_objective_counts_masked_points_only():
    rng = np.random.default_rng(0)
    targets = np.zeros((2, 4, 3), np.float32)
    targets[..., 0] = rng.normal(size=(2, 4))
    targets[..., 1] = [[0.1, 0.001, 0.2, 0.3], [0.5, 0.5, 0.5, 0.5]]
    targets[0, :3, 2] = 1.0  # object 0: three masked points, one padding slot
    targets[1, :1, 2] = 1.0  # object 1: one
    pred = rng.normal(size=(2, 4, 1)).astype(np.float32)
    got = np.asarray(pretrain.chi2_per_object(targets, pred))
    err = np.maximum(targets[..., 1], pretrain.ERR_FLOOR)  # the 0.001 error is floored
    chi2 = (pred[..., 0] - targets[..., 0]) ** 2 / err**2
    np.testing.assert_allclose(got, [chi2[0, :3].mean(), chi2[1, 0]], rtol=1e-5)

    padding = targets.copy()
    padding[0, 3, :2] = [50.0, 0.01]  # a slot that is no masked point
    padding[1, 1:, 0] = -9.0
    np.testing.assert_allclose(np.asarray(pretrain.chi2_per_object(padding, pred)), got, rtol=1e-6)
    moved = targets.copy()
    moved[0, 1, 0] += 1.0  # a masked point's flux
    assert np.asarray(pretrain.chi2_per_object(moved, pred))[0] != pytest.approx(got[0])


def _store(n: int = 12, seed: int = 0) -> Sequences:
    from kit.sequences import sequence_features

    ids, offsets, values, scale = sequence_features(fake_lightcurves(n, seed=seed, min_len=6, max_len=30))
    return Sequences(values=values, offsets=offsets, object_ids=ids, log_scale=scale)


def test_masked_points_carry_no_information_into_the_encoder():
    seqs = _store()
    index = np.arange(len(seqs))
    lens = seqs.lengths[index]
    n_mask = np.clip(np.rint(0.3 * lens), 1, lens - 1).astype(np.int64)
    masked = pretrain.choose_masked(lens, n_mask, np.random.default_rng(5))  # what masked_batch draws with seed 5
    inputs, targets = pretrain.masked_batch(seqs, index, 0.3, np.random.default_rng(5))
    assert targets[..., 2].sum(axis=1).tolist() == n_mask.tolist()

    # every masked observation gets another flux (the brightest of its object), error, detection flag and time
    values = seqs.values.copy()
    rows = np.flatnonzero(masked)
    values[rows, 1] = 3.0
    values[rows, 2] *= 7.0
    values[rows, 3] = 1.0 - values[rows, 3]
    last = seqs.offsets[1:] - 1
    for r in rows[~np.isin(rows, last)]:  # half-way towards the next step, which keeps its own time
        if not masked[r + 1]:
            before, after = np.expm1(values[r, 0].astype(np.float64)), np.expm1(values[r + 1, 0].astype(np.float64))
            values[r, 0], values[r + 1, 0] = np.log1p(before + after / 2), np.log1p(after / 2)
    changed = replace(seqs, values=values)
    inputs2, targets2 = pretrain.masked_batch(changed, index, 0.3, np.random.default_rng(5))
    np.testing.assert_allclose(inputs2["seq"], inputs["seq"], rtol=1e-5, atol=1e-5)  # the encoder sees the same
    assert not np.allclose(targets2[..., 0], targets[..., 0])  # what it must predict changed

    visible = values.copy()
    visible[np.flatnonzero(~masked)[0], 1] = 0.123  # one visible flux
    inputs3, _ = pretrain.masked_batch(replace(seqs, values=visible), index, 0.3, np.random.default_rng(5))
    assert not np.allclose(inputs3["seq"], inputs["seq"])


# --- pretraining ---------------------------------------------------------------------------------------------------


def test_pretraining_writes_the_encoder_and_resumes_from_its_checkpoint(tiny, pretrained, caplog):
    out = pretrain.output_dir(tiny, None)
    encoder = keras.saving.load_model(out / "encoder.keras")
    assert encoder.name == "encoder" and pretrained["n_objects"] == 120 and pretrained["epochs"] == 1
    assert read_json(out / "pretrain.json")["history"][0]["light_curves_per_s"] > 0
    first = read_json(out / "checkpoint" / "state.json")

    with caplog.at_level("INFO", logger="kit.pretrain"):
        resumed = pretrain.pretrain(tiny, TINY, pretrain.PretrainOptions(epochs=2, max_objects=120))
    assert "continuing from" in caplog.text
    assert resumed["epochs"] == 2 and resumed["history"][0] == first["history"][0]  # epoch 1 was not redone
    model = pretrain.build_pretrainer(TINY, pretrain.PretrainOptions())
    pretrain._load_checkpoint(model, out / "checkpoint")
    n_batches = sum(1 for _ in pretrain.epoch_batches([load_sequences(tiny.sequences_dir("test"))],
                                                      [np.arange(120)], TINY, 0, 0))
    assert int(np.asarray(model.optimizer.iterations)) == 2 * n_batches  # the optimizer state went on too
    trained = keras.saving.load_model(out / "encoder.keras")
    for a, b in zip(model.get_layer("encoder").get_weights(), trained.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)

    with pytest.raises(InputError, match="--fresh"):  # a checkpoint of other options is not continued silently
        pretrain.pretrain(tiny, TINY, pretrain.PretrainOptions(epochs=3, max_objects=120, mask_fraction=0.5))


# --- fine-tuning -----------------------------------------------------------------------------------------------------


def _encoder_weights(model):
    return [np.array(w) for w in model.get_layer("encoder").get_weights()]


def test_finetuned_network_starts_from_the_pretrained_encoder(tiny, pretrained):
    path = pretrained["encoder"]
    saved = keras.saving.load_model(path).get_weights()
    keras.utils.set_random_seed(0)
    model = Plan(name="ft", encoder=path).build(TINY, 3)
    for a, b in zip(_encoder_weights(model), saved, strict=True):
        np.testing.assert_array_equal(a, b)
    fresh = Plan(name="scratch").build(TINY, 3)
    assert not all(np.array_equal(a, b) for a, b in zip(_encoder_weights(fresh), saved, strict=True))


def test_an_encoder_of_another_preset_is_refused(pretrained):
    """The tiny encoder reads the seed's 10 step features; the demo preset's network reads 11 (S/N added)."""
    from kit.lstm_model import DEMO

    assert DEMO.n_features != TINY.n_features
    with pytest.raises(InputError, match="pretrain with the preset you fine-tune with"):
        Plan(name="ft", encoder=pretrained["encoder"]).build(DEMO, 3)


def test_frozen_epochs_leave_the_encoder_unchanged(tiny, pretrained):
    """One frozen epoch, then one unfrozen: the encoder's weights at each epoch's end (the monitor's call)."""
    seen = []

    def improving(model):  # always better: the best-weights restore keeps the last epoch
        seen.append((_encoder_weights(model), [np.array(w) for w in model.get_layer("proba").get_weights()]))
        return 1.0 / len(seen)

    seqs = load_sequences(tiny.sequences_dir("train"))
    pos = np.arange(64)
    rng = np.random.default_rng(0)
    y = np.asarray(survey.CLASSES)[rng.integers(0, len(survey.CLASSES), len(pos))]
    onehot = (y[:, None] == np.asarray(survey.CLASSES)[None, :]).astype(np.float32)
    agg = rng.normal(size=(len(pos), 3)).astype(np.float32)
    settings = replace(TINY, epochs=2)
    dataset = lstm._training_dataset(seqs, pos, agg, onehot, metric.sample_weights(y), settings, 0)
    plan = Plan(name="ft", encoder=pretrained["encoder"], freeze_epochs=1, finetune_lr=1e-3)
    keras.utils.set_random_seed(1)
    model = plan.build(settings, 3)
    start = _encoder_weights(model)
    head = [np.array(w) for w in model.get_layer("proba").get_weights()]
    plan.fit(model, dataset, settings, lstm._monitor(improving, patience=10))

    assert len(seen) == 2
    (frozen, head1), (unfrozen, _) = seen
    for a, b in zip(start, frozen, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in zip(head, head1, strict=True))  # the head did learn
    assert not all(np.array_equal(a, b) for a, b in zip(start, unfrozen, strict=True))  # then the encoder too


# --- label fractions -----------------------------------------------------------------------------------------------


def test_label_fraction_is_stratified_and_nested_in_the_folds():
    rng = np.random.default_rng(0)
    y = np.asarray(survey.CLASSES)[rng.choice(len(survey.CLASSES), 2000, p=np.linspace(1, 5, 14) / 42)]
    folds = make_folds(y, 5, 0)
    keep = label_mask(y, folds, 0.25, seed=1)
    for k in range(5):
        for c in survey.CLASSES:
            cell = (folds == k) & (y == c)
            assert keep[cell].sum() == max(1, round(0.25 * cell.sum()))  # stratified in every fold
    small = label_mask(y, folds, 0.05, seed=1)
    assert np.all(keep[small]) and small.sum() < keep.sum()  # 5 % within the 25 % of the same seed
    assert not np.array_equal(small, label_mask(y, folds, 0.05, seed=2))
    assert label_mask(y, folds, 1.0, seed=1).all()

    plan = Plan(label_fraction=0.25, label_seed=1)
    for k in range(5):
        tr = np.flatnonzero(folds != k)
        kept = plan.train_rows(tr, y, folds)
        assert set(kept) == set(np.flatnonzero(keep & (folds != k)))  # fold k's validation objects never enter
    with pytest.raises(InputError):
        label_mask(y, folds, 0.0, seed=1)


def test_equal_steps_repeats_every_kept_object_as_often_to_the_full_length():
    rng = np.random.default_rng(1)
    y = np.asarray(survey.CLASSES)[rng.choice(len(survey.CLASSES), 2000, p=np.linspace(1, 5, 14) / 42)]
    folds = make_folds(y, 5, 0)
    tr = np.flatnonzero(folds != 0)
    for fraction in (0.05, 0.25):
        kept = Plan(label_fraction=fraction, label_seed=3).train_rows(tr, y, folds)
        rows = Plan(label_fraction=fraction, label_seed=3, equal_steps=True).train_rows(tr, y, folds)
        objects, times = np.unique(rows, return_counts=True)
        assert np.array_equal(objects, np.sort(kept))  # the same objects, none added
        assert len(set(times)) == 1 and times[0] == round(len(tr) / len(kept)) > 1  # each equally often
        assert abs(len(rows) - len(tr)) <= len(kept) / 2  # about as many rows as all the labels
    assert np.array_equal(Plan(equal_steps=True).train_rows(tr, y, folds), tr)  # all the labels: unchanged


def test_equal_steps_is_the_command_lines_default_for_a_label_fraction(tiny, tmp_path):
    import argparse

    from kit import transfer

    parser = argparse.ArgumentParser()
    transfer.add_arguments(parser)
    args = parser.parse_args(["--label-fraction", "0.5"])
    assert transfer.label_plan(args, "lstm").equal_steps
    assert transfer.finetune_plan(args, "ft", tiny, TINY).equal_steps
    assert not transfer.label_plan(parser.parse_args(["--label-fraction", "0.5", "--no-equal-steps"]), "x").equal_steps
    assert not transfer.finetune_plan(parser.parse_args([]), "ft", tiny, TINY).equal_steps  # all the labels
    old = asdict(Plan(name="x"))
    del old["equal_steps"]  # a plan saved before the field: the same run as one without it
    assert transfer._plan_key(old) == transfer._plan_key(asdict(Plan(name="y")))

    config = tiny.with_(models_root=tmp_path / "models")
    once = lstm.train(config, TINY, 1, plan=Plan(name="once", label_fraction=0.25))
    equal = lstm.train(config, TINY, 1, plan=Plan(name="equal", label_fraction=0.25, equal_steps=True))
    all_labels = lstm.train(config, TINY, 1, plan=Plan(name="all"))
    assert once["n_labelled"] == equal["n_labelled"] < 150 / 3
    kept, full = once["train_rows"][0], all_labels["train_rows"][0]
    assert equal["train_rows"][0] == kept * round(full / kept) > kept  # each kept object as often, more than once
    assert abs(equal["train_rows"][0] - full) <= kept / 2  # about as many rows as on all the labels


def test_finetuning_end_to_end_on_a_label_fraction(tiny, pretrained):
    from kit.models import finetune, get

    assert get("lstm_ft") is finetune
    plan = Plan(name=finetune.NAME, encoder=pretrained["encoder"], freeze_epochs=1, finetune_lr=1e-4,
                label_fraction=0.5, label_seed=0)
    summary = lstm.train(tiny, TINY, None, plan=plan)
    assert summary["model"] == "lstm_ft" and summary["plan"]["encoder"] == pretrained["encoder"]
    assert summary["n_labelled"] < 150 and len(summary["per_epoch"][0]) == 2  # one frozen, one unfrozen epoch
    ids, oof = load_proba(tiny.oof_path("lstm_ft"))
    assert len(ids) == 150 and np.isfinite(oof).all()  # every object scored, labelled or not
    ids, proba = finetune.predict_test(tiny)
    assert len(ids) == 200 and tiny.test_pred_path("lstm_ft").exists()
    assert not tiny.oof_path("lstm").exists()  # the LSTM's own folder is untouched


def test_pretraining_on_another_source(tiny):
    """--source: another competition folder's test sequences (built under the same build root); its own output."""
    other = tiny.with_(data_dir=tiny.data_dir.parent / "sim-other")
    build_sequences([fake_lightcurves(60, seed=9, max_len=30)], other.sequences_dir("test"))
    summary = pretrain.pretrain(tiny, TINY, pretrain.PretrainOptions(epochs=1, source=str(other.data_dir)))
    assert summary["n_objects"] == 60 and summary["source"] == str(other.data_dir)
    assert (tiny.models_dir / "pretrain-sim-other" / "encoder.keras").exists()


def test_study_scores_the_trained_finetuned_model_instead_of_training_it_again(tiny, pretrained, tmp_path):
    """A study run on all the labels is the registered lstm_ft when its settings and plan match; otherwise it trains."""
    from kit import transfer

    config = tiny.with_(models_root=tmp_path / "models")
    start = dict(encoder=pretrained["encoder"], freeze_epochs=1, finetune_lr=1e-4)
    lstm.train(config, TINY, None, plan=Plan(name="lstm_ft", **start))
    settings = replace(TINY, features=lstm.feature_sets(config, TINY.features))
    run = Plan(name=transfer.run_name("pretrained", 1.0, 0), **start)
    assert transfer.registered_run(config, settings, run) == "lstm_ft"
    assert transfer.registered_run(config, settings, replace(run, freeze_epochs=2)) is None  # another start
    assert transfer.registered_run(config, settings, replace(run, label_fraction=0.5)) is None
    assert transfer.registered_run(config, replace(settings, epochs=3), run) is None  # other settings
    assert transfer.registered_run(config, settings, replace(run, encoder=None, freeze_epochs=0)) is None  # no lstm

    result = transfer._run(config, TINY, run, None)
    assert result["model"] == "lstm_ft" and result["oof"] == read_json(config.score_path("lstm_ft"))["oof"]
    assert result["n_labelled"] == 150 and not config.model_dir(run.name).exists()  # nothing trained again
    other = transfer._run(config, TINY, replace(run, freeze_epochs=0), None)
    assert "model" not in other and config.oof_path(run.name).exists()  # a different start trains its own run


def test_study_has_an_arm_per_encoder_of_another_survey(tiny, pretrained, tmp_path):
    """--also-pretrained: each more encoder (e.g. pretrained on another simulated survey) is an arm of its own."""
    from kit import transfer

    config = tiny.with_(models_root=tmp_path / "models")
    other = tiny.with_(data_dir=tiny.data_dir.parent / "sim-survey2")
    build_sequences([fake_lightcurves(60, seed=11, max_len=30)], other.sequences_dir("test"))
    source = pretrain.pretrain(config, TINY, pretrain.PretrainOptions(epochs=1, source=str(other.data_dir)))
    assert transfer.arm_name(source["encoder"]) == "pretrained-sim-survey2"
    assert transfer.arm_name(pretrained["encoder"]) == "pretrained"

    table = transfer.study(config, TINY, pretrained["encoder"], fractions=(1.0,), seeds=1, max_folds=1,
                           more_encoders=(source["encoder"],))
    assert list(table["arm"]) == ["scratch", "pretrained", "pretrained-sim-survey2"]
    runs = read_json(config.score_path(transfer.run_name("pretrained-sim-survey2", 1.0, 0)))
    assert runs["plan"]["encoder"] == source["encoder"]  # fine-tuned from the other survey's encoder
    assert (config.model_dir("transfer") / "study.png").exists()
    with pytest.raises(InputError, match="second encoder"):
        transfer.study(config, TINY, pretrained["encoder"], fractions=(1.0,), more_encoders=(pretrained["encoder"],))


def test_finetuning_runs_at_the_networks_learning_rate_unless_told(tiny, pretrained):
    """The unfrozen phase's default learning rate is the network's own (measured better than a tenth of it)."""
    import argparse

    from kit import transfer
    from kit.models import finetune

    parser = argparse.ArgumentParser()
    finetune.add_arguments(parser)
    for argv, expected in (([], TINY.learning_rate), (["--finetune-lr", "1e-4"], 1e-4)):
        args = parser.parse_args(["--pretrained", str(pretrained["encoder"]), *argv])
        plan = transfer.finetune_plan(args, finetune.NAME, tiny, TINY)
        assert plan.finetune_lr == pytest.approx(expected) and plan.freeze_epochs == 2
