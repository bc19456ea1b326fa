"""Recipes, schedules and ZFNet's filter renormalisation against the papers."""

import numpy as np
import pytest
import tensorflow as tf

from overfeat_tf.training import constraints, recipes, schedules


def test_recipes_hold_the_papers_values():
    alexnet = recipes.get_recipe("alexnet")
    # AlexNet section 5: batch 128, momentum 0.9, weight decay 0.0005, lr 0.01.
    assert (alexnet.batch_size, alexnet.momentum, alexnet.weight_decay, alexnet.learning_rate) == (
        128,
        0.9,
        5e-4,
        0.01,
    )
    assert alexnet.schedule == "plateau" and alexnet.plateau_factor == 10
    assert alexnet.plateau_max_drops == 3
    # ZFNet section 3: filters whose RMS exceeds 0.1 are renormalised to 0.1.
    assert recipes.get_recipe("zfnet").max_filter_rms == 0.1
    overfeat = recipes.get_recipe("overfeat")
    # OverFeat section 3.1: momentum 0.6, L2 1e-5, lr 5e-2 halved after 30, 50, 60, 70, 80.
    assert (overfeat.momentum, overfeat.weight_decay, overfeat.learning_rate) == (0.6, 1e-5, 0.05)
    assert overfeat.step_epochs == (30, 50, 60, 70, 80) and overfeat.step_factor == 0.5


def test_unknown_recipe_lists_valid_ones():
    with pytest.raises(ValueError, match="alexnet, zfnet, overfeat"):
        recipes.get_recipe("resnet")


@pytest.mark.parametrize(
    "epoch,rate",
    [
        (0, 0.05),
        (29, 0.05),
        (30, 0.025),
        (49, 0.025),
        (50, 0.0125),
        (60, 0.00625),
        (70, 0.003125),
        (80, 0.0015625),
        (89, 0.0015625),
    ],
)
def test_overfeat_halving_schedule(epoch, rate):
    assert schedules.step_rate(recipes.get_recipe("overfeat"), epoch) == pytest.approx(rate)


def test_plateau_divides_by_ten_at_most_three_times():
    schedule = schedules.PlateauSchedule(recipes.get_recipe("alexnet"))
    patience = recipes.get_recipe("alexnet").plateau_patience
    assert schedule.rate() == pytest.approx(0.01)
    assert not schedule.update(50.0)  # improvement
    assert not schedule.update(40.0)  # improvement
    stalled = [schedule.update(40.0) for _ in range(patience)]
    assert stalled == [False] * (patience - 1) + [True]  # / 10 after `patience` epochs
    assert schedule.rate() == pytest.approx(0.001)
    assert not schedule.update(30.0)
    drops = [schedule.update(30.0) for _ in range(5 * patience)]
    assert sum(drops) == 2  # three drops in all
    assert schedule.rate() == pytest.approx(1e-5)


def test_plateau_state_travels_in_a_checkpoint(tmp_path):
    recipe = recipes.get_recipe("alexnet")
    schedule = schedules.PlateauSchedule(recipe)
    for _ in range(1 + recipe.plateau_patience):
        schedule.update(10.0)
    path = tf.train.Checkpoint(schedule=schedule).save(str(tmp_path / "ckpt"))
    restored = schedules.PlateauSchedule(recipe)
    tf.train.Checkpoint(schedule=restored).restore(path)
    assert restored.rate() == pytest.approx(0.001) and float(restored.best) == 10.0


def test_zfnet_renormalisation_caps_filter_rms():
    kernel = np.zeros((3, 3, 2, 3), "float32")
    kernel[..., 0] = 0.5  # RMS 0.5 -> rescaled to 0.1
    kernel[..., 1] = 0.05  # RMS 0.05 -> unchanged
    kernel[..., 2] = np.random.default_rng(0).normal(scale=0.3, size=(3, 3, 2))
    variable = tf.Variable(kernel)
    constraints.renormalize_filters([variable], 0.1)
    rms = np.sqrt((variable.numpy() ** 2).mean(axis=(0, 1, 2)))
    np.testing.assert_allclose(rms, [0.1, 0.05, 0.1], rtol=1e-5)
    # Rescaling keeps the filter's direction.
    np.testing.assert_allclose(
        variable.numpy()[..., 2] / kernel[..., 2],
        0.1 / np.sqrt((kernel[..., 2] ** 2).mean()),
        rtol=1e-4,
    )
