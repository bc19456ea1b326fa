"""Learning-rate schedules of the papers, as checkpointable state.

Both are decided at epoch ends, so the rate is one `tf.Variable` the optimiser reads
and the schedule's counters travel in the checkpoint: a resumed run continues them.
"""

from __future__ import annotations

import tensorflow as tf

from overfeat_tf.training.recipes import Recipe


def step_rate(recipe: Recipe, epoch: int) -> float:
    """OverFeat's rate for 0-based `epoch`: halved after each epoch in `step_epochs`."""
    drops = sum(epoch >= boundary for boundary in recipe.step_epochs)
    return recipe.learning_rate * recipe.step_factor**drops


class PlateauSchedule(tf.Module):
    """AlexNet's rule: divide the rate when validation error stops improving.

    `update(error)` after each epoch's validation: when `error` has not improved on the
    best by more than `min_delta` for `patience` epochs, the rate is divided by `factor`,
    at most `max_drops` times.
    """

    def __init__(self, recipe: Recipe, min_delta: float = 1e-3) -> None:
        super().__init__(name="plateau_schedule")
        self.recipe = recipe
        self.min_delta = min_delta
        self.best = tf.Variable(float("inf"), trainable=False, name="best_error")
        self.waited = tf.Variable(0, trainable=False, name="epochs_without_improvement")
        self.drops = tf.Variable(0, trainable=False, name="drops")

    def update(self, error: float) -> bool:
        """Records one epoch's validation error; True when the rate was divided."""
        if error < float(self.best.numpy()) - self.min_delta:
            self.best.assign(error)
            self.waited.assign(0)
            return False
        self.waited.assign_add(1)
        waited, drops = int(self.waited.numpy()), int(self.drops.numpy())
        if waited >= self.recipe.plateau_patience and drops < self.recipe.plateau_max_drops:
            self.drops.assign_add(1)
            self.waited.assign(0)
            return True
        return False

    def rate(self) -> float:
        return self.recipe.learning_rate / self.recipe.plateau_factor ** int(self.drops.numpy())
