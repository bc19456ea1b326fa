"""Published ImageNet statistics used by the AlexNet and OverFeat recipes.

Pixel statistics are on the 0-255 scale unless the
name says otherwise; the pipeline accepts replacements computed by `pipelines.stats`.
"""

import numpy as np

# Per-channel RGB mean on the 0-255 scale (the "Inception"/VGG constants).
IMAGENET_MEAN_RGB: tuple[float, float, float] = (123.68, 116.78, 103.94)
# Per-channel std of ImageNet pixels, 0-255 scale (torchvision's constants x 255).
IMAGENET_STD_RGB: tuple[float, float, float] = (58.395, 57.12, 57.375)

# PCA of the RGB pixel covariance on the 0-1 scale (fb.resnet.torch). Multiply by 255
# for 0-255 pixels. Krizhevsky et al. 2012, section 4.1.
PCA_EIGVAL = np.array([0.2175, 0.0188, 0.0045], dtype=np.float32)
# Rows are R, G, B; columns are the eigenvectors (same order as PCA_EIGVAL).
PCA_EIGVEC = np.array(
    [
        [-0.5675, 0.7192, 0.4009],
        [-0.5808, -0.0045, -0.8140],
        [-0.5836, -0.6948, 0.4203],
    ],
    dtype=np.float32,
)

# AlexNet and OverFeat resize the shorter side to this many pixels before cropping.
RESIZE_SHORTER_SIDE = 256

# Images with more pixels than this (height x width, read from the file's header before
# decoding) are refused: a few kilobytes of PNG can decode to gigabytes. 40 megapixels
# is far above any ImageNet image (the largest is under 10 megapixels) and decodes to
# 120 MB of RGB.
MAX_PIXELS = 40_000_000
