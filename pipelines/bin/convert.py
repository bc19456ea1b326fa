"""overfeat-convert: image folders, raw ILSVRC2012 tars, PASCAL VOC or ILSVRC DET
-> sharded TFRecords.

  overfeat-convert --folder=/data/my_images --output_dir=/data/tfrecords
  overfeat-convert --train_tar=ILSVRC2012_img_train.tar --val_tar=ILSVRC2012_img_val.tar \
      --bbox_train=ILSVRC2012_bbox_train_v2.tar.gz --bbox_val=ILSVRC2012_bbox_val_v3.tgz \
      --synset_words=synset_words.txt --resize_shorter=256 --output_dir=/data/imagenet256
  overfeat-convert --voc=VOCdevkit/VOC2007 --output_dir=/data/voc2007
  overfeat-convert --ilsvrc_det=/data/ILSVRC --synset_words=LOC_synset_mapping.txt \
      --output_dir=/data/ilsvrc_det

Annotation problems (bad XML, missing image, box outside its image) are counted and
named on stderr; --strict fails at the first, in one line naming it.
"""

import sys

from absl import app, flags

from pipelines import annotations, convert, ilsvrc_det, voc

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "folder",
    None,
    "Class-folder tree: train/ and validation/ "
    "sub-folders, or one tree converted as the train split.",
)
flags.DEFINE_string("train_tar", None, "ILSVRC2012_img_train.tar (tar of per-synset tars).")
flags.DEFINE_string("val_tar", None, "ILSVRC2012_img_val.tar (needs --bbox_val for labels).")
flags.DEFINE_string("bbox_train", None, "Train bbox XMLs: directory or .tar.gz.")
flags.DEFINE_string("bbox_val", None, "Validation bbox XMLs: directory or .tgz.")
flags.DEFINE_string(
    "voc",
    None,
    "PASCAL VOC 2007/2012 folder (JPEGImages/, Annotations/, "
    "ImageSets/Main/): written as detection_train, detection_tuning and "
    "detection_validation.",
)
flags.DEFINE_string(
    "ilsvrc_det",
    None,
    "ILSVRC 2013/2014 DET folder (Data/DET/ and "
    "Annotations/DET/, or ILSVRC20NN_DET_[bbox_]{train,val}/).",
)
flags.DEFINE_bool(
    "strict", False, "Fail at the first annotation problem instead of counting and skipping it."
)
flags.DEFINE_string("synset_words", None, "synset_words.txt for the class texts.")
flags.DEFINE_string("output_dir", None, "Where the shards go.", required=True)
flags.DEFINE_integer("train_shards", 1024, "Train (and detection_train) shards.", lower_bound=1)
flags.DEFINE_integer("validation_shards", 128, "Shards of each other split.", lower_bound=1)
flags.DEFINE_integer(
    "resize_shorter",
    0,
    "Resize the shorter side down to this once "
    "(256 for AlexNet/OverFeat); 0 keeps the original size.",
    lower_bound=0,
)
flags.DEFINE_integer(
    "jpeg_quality", 95, "Quality of re-encoded JPEGs.", lower_bound=1, upper_bound=100
)
flags.DEFINE_integer("num_workers", 0, "Worker processes; 0 = one per CPU.", lower_bound=0)
flags.register_multi_flags_validator(
    ["folder", "train_tar", "val_tar", "voc", "ilsvrc_det"],
    lambda f: (
        sum(map(bool, [f["folder"], f["train_tar"] or f["val_tar"], f["voc"], f["ilsvrc_det"]]))
        == 1
    ),
    message="give one of --folder, --train_tar/--val_tar, --voc or --ilsvrc_det",
)
flags.register_multi_flags_validator(
    ["val_tar", "bbox_val"],
    lambda f: not f["val_tar"] or bool(f["bbox_val"]),
    message="--val_tar needs --bbox_val (validation labels come from its XMLs)",
)


def _tasks(problems: annotations.Problems):
    if FLAGS.folder:
        return convert.tasks_from_folder(FLAGS.folder, FLAGS.resize_shorter, FLAGS.jpeg_quality)
    if FLAGS.voc or FLAGS.ilsvrc_det:
        flag, read = (
            ("voc", voc.read_voc) if FLAGS.voc else ("ilsvrc_det", ilsvrc_det.read_ilsvrc_det)
        )
        try:
            images = read(FLAGS[flag].value, problems)
        except ValueError as e:
            sys.exit(f"overfeat-convert: --{flag}={FLAGS[flag].value}: {e}")
        return convert.tasks_from_annotations(
            images,
            convert.read_synset_words(FLAGS.synset_words),
            FLAGS.resize_shorter,
            FLAGS.jpeg_quality,
            problems,
        )
    return convert.tasks_from_tars(
        FLAGS.train_tar,
        FLAGS.val_tar,
        FLAGS.bbox_train,
        FLAGS.bbox_val,
        FLAGS.synset_words,
        FLAGS.resize_shorter,
        FLAGS.jpeg_quality,
        problems,
    )


def _main(argv: list[str]) -> None:
    del argv
    problems = annotations.Problems(FLAGS.strict)
    try:
        synsets, splits = _tasks(problems)
    except annotations.AnnotationError as e:
        sys.exit(f"overfeat-convert --strict: {e}")
    if problems.found:
        print(f"Annotation problems (skipped or fixed):\n{problems.summary()}", file=sys.stderr)
    shards = {
        split: FLAGS.train_shards if split.endswith("train") else FLAGS.validation_shards
        for split in splits
    }
    counts = convert.write_dataset(
        FLAGS.output_dir, synsets, splits, shards, FLAGS.num_workers or None
    )
    print(f"Wrote {counts} ({len(synsets)} classes) to {FLAGS.output_dir}")


def main() -> None:
    """Console-script entry point."""
    app.run(_main)


if __name__ == "__main__":
    main()
