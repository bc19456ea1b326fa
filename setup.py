"""overfeat_tf: AlexNet, ZFNet and OverFeat in TensorFlow 2 / Keras 3."""

from setuptools import find_packages, setup

setup(
    name="overfeat_tf",
    version="0.1.0",
    description=(
        "AlexNet, ZFNet and OverFeat for classification, localization and "
        "detection in TensorFlow 2 / Keras 3: training, dense evaluation, export."
    ),
    packages=find_packages(include=["overfeat_tf*", "pipelines*", "export*"]),
    python_requires=">=3.10",
    # The `tensorflow` wheel runs on CPU-only machines and does not pull CUDA;
    # GPU users add the `gpu` extra. Never depend on tensorflow-cpu as well:
    # both install the same `tensorflow` module (DESIGN.md section 5).
    install_requires=[
        "tensorflow==2.21.0",
        "keras>=3.12,<4",
        "absl-py>=2.1",
        "tensorflow-datasets==4.9.10",
        "tensorboard==2.21.0",
        "numpy>=1.26",
        "pillow>=10",
        "matplotlib>=3.7",
    ],
    extras_require={
        "gpu": ["tensorflow[and-cuda]==2.21.0"],
        "serving": ["tensorflow-serving-api==2.21.0"],
        "test": ["pytest>=8", "tensorflow-serving-api==2.21.0"],
        "benchmark": ["torch>=2.4"],
    },
    entry_points={
        "console_scripts": [
            "overfeat-train=overfeat_tf.train:run",
            "overfeat-evaluate=overfeat_tf.evaluate:run",
            "overfeat-experiment=overfeat_tf.experiment:run",
            "overfeat-train-boxes=overfeat_tf.train_boxes:run",
            "overfeat-detect=overfeat_tf.detect_images:run",
            "overfeat-export=export.export_main:run",
            "overfeat-visualize=overfeat_tf.visualize:run",
            "overfeat-features=overfeat_tf.extract_features:run",
            "overfeat-convert=pipelines.bin.convert:main",
            "overfeat-stats=pipelines.bin.stats:main",
            "overfeat-make-embedded=pipelines.bin.make_embedded:main",
        ],
    },
)
