"""overfeat_tf: AlexNet, ZFNet and OverFeat in TensorFlow 2 / Keras 3.

The package's metadata, dependencies and programs are declared in pyproject.toml; this
file lets `pip install -e .` work with older tools as well.
"""

from setuptools import setup

setup()
