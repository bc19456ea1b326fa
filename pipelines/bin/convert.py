"""overfeat-convert: image folders or raw ILSVRC2012 tars -> sharded TFRecords.

  overfeat-convert --folder=/data/my_images --output_dir=/data/tfrecords
  overfeat-convert --train_tar=ILSVRC2012_img_train.tar --val_tar=ILSVRC2012_img_val.tar \
      --bbox_train=ILSVRC2012_bbox_train_v2.tar.gz --bbox_val=ILSVRC2012_bbox_val_v3.tgz \
      --synset_words=synset_words.txt --resize_shorter=256 --output_dir=/data/imagenet256
"""

from absl import app, flags

from pipelines import convert

FLAGS = flags.FLAGS
flags.DEFINE_string("folder", None, "Class-folder tree: train/ and validation/ "
                    "sub-folders, or one tree converted as the train split.")
flags.DEFINE_string("train_tar", None, "ILSVRC2012_img_train.tar (tar of per-synset tars).")
flags.DEFINE_string("val_tar", None, "ILSVRC2012_img_val.tar (needs --bbox_val for labels).")
flags.DEFINE_string("bbox_train", None, "Train bbox XMLs: directory or .tar.gz.")
flags.DEFINE_string("bbox_val", None, "Validation bbox XMLs: directory or .tgz.")
flags.DEFINE_string("synset_words", None, "synset_words.txt for the class texts.")
flags.DEFINE_string("output_dir", None, "Where the shards go.", required=True)
flags.DEFINE_integer("train_shards", 1024, "Train shards.", lower_bound=1)
flags.DEFINE_integer("validation_shards", 128, "Validation shards.", lower_bound=1)
flags.DEFINE_integer("resize_shorter", 0, "Resize the shorter side down to this once "
                     "(256 for AlexNet/OverFeat); 0 keeps the original size.", lower_bound=0)
flags.DEFINE_integer("jpeg_quality", 95, "Quality of re-encoded JPEGs.",
                     lower_bound=1, upper_bound=100)
flags.DEFINE_integer("num_workers", 0, "Worker processes; 0 = one per CPU.", lower_bound=0)
flags.register_multi_flags_validator(
    ["folder", "train_tar", "val_tar"],
    lambda f: bool(f["folder"]) != bool(f["train_tar"] or f["val_tar"]),
    message="give either --folder or --train_tar/--val_tar")
flags.register_multi_flags_validator(
    ["val_tar", "bbox_val"], lambda f: not f["val_tar"] or bool(f["bbox_val"]),
    message="--val_tar needs --bbox_val (validation labels come from its XMLs)")


def _main(argv: list[str]) -> None:
    del argv
    if FLAGS.folder:
        synsets, splits = convert.tasks_from_folder(FLAGS.folder, FLAGS.resize_shorter,
                                                    FLAGS.jpeg_quality)
    else:
        synsets, splits = convert.tasks_from_tars(
            FLAGS.train_tar, FLAGS.val_tar, FLAGS.bbox_train, FLAGS.bbox_val,
            FLAGS.synset_words, FLAGS.resize_shorter, FLAGS.jpeg_quality)
    counts = convert.write_dataset(
        FLAGS.output_dir, synsets, splits,
        {"train": FLAGS.train_shards, "validation": FLAGS.validation_shards},
        FLAGS.num_workers or None)
    print(f"Wrote {counts} ({len(synsets)} classes) to {FLAGS.output_dir}")


def main() -> None:
    """Console-script entry point."""
    app.run(_main)


if __name__ == "__main__":
    main()
