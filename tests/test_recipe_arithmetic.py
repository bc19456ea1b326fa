"""The Trainer's update rule against the papers' arithmetic, by hand."""

import dataclasses

import keras
import numpy as np
import tensorflow as tf

import overfeat_tf
from overfeat_tf import transfer
from overfeat_tf.training import recipes
from overfeat_tf.training.trainer import TrainConfig, Trainer

TINY = {"num_classes": 3, "width": 0.0625, "dropout": 0.0, "init": "he"}
BATCH = 4


def _trainer(tmp_path, recipe: recipes.Recipe, model_fn) -> Trainer:
    config = TrainConfig(
        model_dir=str(tmp_path),
        recipe=recipe,
        steps_per_epoch=2,
        epochs=1,
        batch_size=BATCH,
        verbose=False,
        xla="off",
    )
    keras.utils.set_random_seed(2)
    return Trainer(config, tf.distribute.get_strategy(), model_fn)


def _batches(trainer: Trainer, size: int, steps: int):
    rng = np.random.default_rng(4)
    images = rng.normal(size=(BATCH * steps, size, size, 3)).astype("float32")
    labels = rng.integers(0, 3, BATCH * steps).astype("int32")
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(BATCH)
    iterator = iter(trainer.strategy.distribute_datasets_from_function(lambda _: dataset))
    return iterator, [
        (images[i : i + BATCH], labels[i : i + BATCH]) for i in range(0, len(images), BATCH)
    ]


def _cross_entropy_gradients(model: keras.Model, images, labels) -> list[np.ndarray]:
    with tf.GradientTape() as tape:
        logits = model(images, training=True)
        loss = tf.reduce_mean(
            keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        )
    return [g.numpy() for g in tape.gradient(loss, model.trainable_variables)]


def test_sgd_update_with_coupled_weight_decay_equals_the_hand_computation(tmp_path):
    # AlexNet section 5: v <- 0.9 v - 0.0005 lr w - lr g;  w <- w + v. Weight decay
    # applies to the weights (kernels), not the biases. Two steps: the second checks
    # the momentum term. A weight decay of 1 (the paper's is 0.0005), so that its term
    # is not lost in the tolerance: a missing or decoupled decay fails.
    recipe = dataclasses.replace(recipes.get_recipe("alexnet"), weight_decay=1.0)
    lr, m, wd = recipe.learning_rate, recipe.momentum, recipe.weight_decay
    trainer = _trainer(tmp_path, recipe, lambda: overfeat_tf.build_model("alexnet", **TINY))
    model = trainer.model
    decayed = ["kernel" in v.path for v in model.trainable_variables]
    iterator, batches = _batches(trainer, 227, steps=2)
    velocity = [np.zeros(v.shape, np.float32) for v in model.trainable_variables]
    for images, labels in batches:
        before = [v.numpy() for v in model.trainable_variables]
        grads = _cross_entropy_gradients(model, images, labels)
        trainer.train_step(iterator)
        for i, (w, g, var) in enumerate(zip(before, grads, model.trainable_variables)):
            velocity[i] = m * velocity[i] - (wd * lr * w if decayed[i] else 0) - lr * g
            scale = np.abs(velocity[i]).max()
            np.testing.assert_allclose(
                var.numpy() - w, velocity[i], rtol=1e-3, atol=1e-3 * scale, err_msg=var.path
            )
            if decayed[i]:
                assert np.abs(wd * lr * w).max() > 0.01 * scale, var.path


def _filter_rms(kernel) -> np.ndarray:
    return np.sqrt(np.mean(np.square(np.asarray(kernel)), axis=(0, 1, 2)))


def test_zfnet_filter_cap_runs_after_every_update_and_skips_frozen_layers(tmp_path):
    # ZFNet section 3: "renormalize each filter in the convolutional layers whose RMS
    # value exceeds a fixed radius of 1e-1 to this fixed radius". Frozen layers (the
    # transfer experiments of section 5.2) keep their filters.
    def model_fn():
        model = overfeat_tf.build_model("zfnet", **TINY)
        transfer.freeze_through(model, "conv1")
        return model

    recipe = recipes.get_recipe("zfnet")
    assert recipe.max_filter_rms == 0.1
    trainer = _trainer(tmp_path, recipe, model_fn)
    model = trainer.model
    iterator, _ = _batches(trainer, 224, steps=2)
    for _ in range(2):
        for name in ("conv1", "conv3", "fc7"):  # push every filter over the cap
            kernel = model.get_layer(name).kernel
            kernel.assign(kernel * (0.5 / _filter_rms(kernel)))
        frozen = model.get_layer("conv1").kernel.numpy()
        trainer.train_step(iterator)
        np.testing.assert_array_equal(model.get_layer("conv1").kernel.numpy(), frozen)
        np.testing.assert_allclose(_filter_rms(model.get_layer("conv3").kernel), 0.1, rtol=1e-4)
        for name in ("conv2", "conv4", "conv5"):
            assert _filter_rms(model.get_layer(name).kernel).max() <= 0.1 * (1 + 1e-4), name
        assert _filter_rms(model.get_layer("fc7").kernel).min() > 0.4  # not a conv layer
