"""Every model round-trips through a `.keras` file into a fresh process."""

import subprocess
import sys

import numpy as np

import overfeat_tf

_LOAD = """
import sys, numpy as np, keras
import overfeat_tf  # registers the custom layers
for path in sys.argv[1:]:
    model = keras.saving.load_model(path + ".keras")
    x = np.load(path + ".in.npy")
    np.save(path + ".out.npy", model.predict(x, verbose=0))
"""


def test_keras_files_load_in_a_fresh_process(tmp_path, subprocess_env):
    expected, paths = {}, []
    for name in overfeat_tf.MODEL_NAMES:
        model = overfeat_tf.build_model(name, num_classes=5, width=0.0625)
        size = overfeat_tf.native_input_size(name)
        x = np.random.default_rng(0).normal(size=(2, size, size, 3)).astype("float32")
        path = str(tmp_path / name)
        model.save(path + ".keras")
        np.save(path + ".in.npy", x)
        expected[name] = model.predict(x, verbose=0)
        paths.append(path)
    subprocess.run([sys.executable, "-c", _LOAD, *paths], check=True, env=subprocess_env)
    for name, path in zip(overfeat_tf.MODEL_NAMES, paths):
        # Same weights and graph; oneDNN may sum in another order in another process.
        np.testing.assert_allclose(
            np.load(path + ".out.npy"), expected[name], rtol=1e-5, atol=1e-6, err_msg=name
        )
