"""Training recipes as data: the three papers', and `quick` for small data sets.

A `Recipe` holds an optimiser, regularisation, schedule and initialisation; the training
binary's flags override single fields with `dataclasses.replace`. Each model's default is
its paper's recipe (`ModelInfo.recipe`).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Recipe:
    """SGD with momentum and coupled L2 weight decay, plus a learning-rate schedule.

    Attributes:
      learning_rate: initial rate.
      momentum: SGD momentum.
      weight_decay: L2 coefficient added to the gradient of every kernel before the
        momentum update (`v = m v - wd lr w - lr grad`, AlexNet section 5); not Keras 3's
        decoupled `weight_decay`.
      batch_size: global batch, images.
      schedule: "plateau" (divide by `plateau_factor` when validation top-1 error has
        not improved for `plateau_patience` epochs, at most `plateau_max_drops` times;
        the paper gives no patience: 3 epochs ride out validation noise) or "step" (multiply by
        `step_factor` after each epoch in `step_epochs`).
      init, dropout: `build_model` arguments.
      clip_norm: before every update, scale the gradients down so that their global L2
        norm is at most this; None: never (the papers do not clip).
      max_filter_rms: after every update, rescale each conv filter whose RMS exceeds
        this to exactly this (ZFNet section 3); None disables.
      pipeline: the input pipeline's augmentation (`pipelines.AUGMENTATION_NAMES`:
        "alexnet", "zfnet" or "overfeat").
      pca_lighting: AlexNet's PCA colour augmentation (AlexNet section 4.1; ZFNet and
        OverFeat describe none).
      epochs: the paper's training length, epochs.
    """

    learning_rate: float
    momentum: float
    weight_decay: float
    batch_size: int
    schedule: str
    init: str = "paper"
    dropout: float = 0.5
    plateau_factor: float = 10.0
    plateau_patience: int = 3
    plateau_max_drops: int = 3
    step_epochs: tuple[int, ...] = ()
    step_factor: float = 0.5
    clip_norm: float | None = None
    max_filter_rms: float | None = None
    pipeline: str = "alexnet"
    pca_lighting: bool = False
    epochs: int = 90


RECIPES: dict[str, Recipe] = {
    # AlexNet section 5: batch 128, momentum 0.9, weight decay 5e-4, lr 0.01 divided by
    # 10 when the validation error stopped improving, three times in ~90 epochs.
    # Section 4.1: random crops of the central square, flips and PCA lighting.
    "alexnet": Recipe(
        learning_rate=0.01,
        momentum=0.9,
        weight_decay=5e-4,
        batch_size=128,
        schedule="plateau",
        pca_lighting=True,
        epochs=90,
    ),
    # ZFNet section 3: AlexNet's optimiser (lr 0.01, momentum 0.9, batch 128) with
    # filter RMS renormalisation to 0.1; weight decay as AlexNet's; 70 epochs; the
    # 10 corner and centre sub-crops (with flips) of the central square, no lighting.
    "zfnet": Recipe(
        learning_rate=0.01,
        momentum=0.9,
        weight_decay=5e-4,
        batch_size=128,
        schedule="plateau",
        max_filter_rms=0.1,
        pipeline="zfnet",
        epochs=70,
    ),
    # OverFeat section 3.1: batch 128, momentum 0.6, L2 weight decay 1e-5, lr 0.05
    # halved after epochs 30, 50, 60, 70, 80.
    "overfeat": Recipe(
        learning_rate=0.05,
        momentum=0.6,
        weight_decay=1e-5,
        batch_size=128,
        schedule="step",
        step_epochs=(30, 50, 60, 70, 80),
        step_factor=0.5,
        pipeline="overfeat",
        epochs=90,
    ),
    # Not from a paper: for data sets of thousands of images (the embedded set, a user's
    # own photographs), where the papers' N(0, 0.01) init with dropout can sit at chance
    # for tens of epochs. He init and no dropout leave the plateau within a few epochs;
    # the length and drop epochs were chosen on a held-out part of the embedded training
    # split (docs/training.md), never on the validation split. The gradient-norm clip
    # keeps wider models on real photographs from diverging at this rate; the embedded
    # set's gradient norms stay far below it.
    "quick": Recipe(
        learning_rate=0.02,
        momentum=0.9,
        weight_decay=5e-4,
        batch_size=64,
        schedule="step",
        step_epochs=(8, 15),
        step_factor=0.1,
        init="he",
        dropout=0.0,
        pca_lighting=True,
        clip_norm=10.0,
        epochs=16,
    ),
}

# The papers' recipes assume ImageNet's 1.28M training images; below this many, the
# training binary points to `quick`.
PAPER_RECIPE_MIN_EXAMPLES = 50_000


def is_paper_recipe(name: str) -> bool:
    """True for a recipe that reproduces a paper (every recipe but `quick`)."""
    return name != "quick"


def get_recipe(name: str) -> Recipe:
    """The recipe called `name`; `ValueError` lists the valid names."""
    try:
        return RECIPES[name]
    except KeyError:
        raise ValueError(f"Unknown recipe {name!r}; valid recipes: {', '.join(RECIPES)}") from None
