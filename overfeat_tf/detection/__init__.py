"""Localization and detection (OverFeat sections 4-5).

- `regressor`: the box-regression head on the trunk's offset-pooled maps, its run dir.
- `targets`: regression targets relative to each location's window.
- `box_maps`: `BoxPredictor`, class maps and regressed boxes at every scale and flip.
- `train_regressor`: the head as a `Trainer` task on a frozen classifier, over several scales.
- `localizer`: ranked (class, box) guesses per image (ILSVRC localization).
- `boxes`, `merge`, `metrics`, `drawing`: box arithmetic, the greedy merge, ILSVRC
  localization error and VOC mean average precision, PNGs of boxes.
- the detector (background class, several objects per image).
"""
