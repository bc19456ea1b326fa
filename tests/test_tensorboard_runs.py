"""TensorBoard layout: train/ and validation/ runs with the same tags, read back from
the event files."""

from overfeat_tf.training import summaries


def test_validation_keys_go_to_their_own_run_under_the_same_tag(tmp_path):
    writers = summaries.RunWriters(str(tmp_path))
    for epoch in (1, 2):
        writers.write_epoch(
            epoch,
            {
                "loss": 1.0 / epoch,
                "val_loss": 2.0,
                "top1_error": 50.0,
                "val_top1_error": 60.0,
                "lr_drops": 3,
            },
        )
    train, validation = (
        summaries.read_tags(str(tmp_path / run)) for run in ("train", "validation")
    )
    assert train == {"epoch/loss": [1, 2], "epoch/top1_error": [1, 2]}
    assert validation == train  # same tags: TensorBoard overlays the two runs
