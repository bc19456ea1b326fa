"""`--stats`, the one definition the training and evaluation binaries import."""

from absl import flags

STATS = flags.DEFINE_string(
    "stats", None,
    "Pixel statistics from overfeat-stats (.npz) to use instead of the published ImageNet "
    "constants (the default): the input mean and std, and the eigenvectors of AlexNet's "
    "PCA lighting. Training records them in the run; evaluation, export and serving then "
    "use the run's. Given to overfeat-evaluate, they replace what the run recorded.",
)
