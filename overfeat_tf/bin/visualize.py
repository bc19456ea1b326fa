r"""ZFNet's visualizations of a trained model: `overfeat-visualize` / `python -m overfeat_tf.bin.visualize`.

Modes (Zeiler & Fergus 2013):
  deconv     deconvnet projection of the strongest activation of feature maps (2.1)
  top9       the nine strongest activations of feature maps over a data set (Fig. 2)
  occlusion  class probability / top class / feature map under a sliding grey square
             (4.2, Fig. 5), as heat maps over the image and as arrays
  filters    the first layer's filters as a grid (Fig. 5, 6)
  correspondence  Delta_l of a part masked in related images against random masks
             (4.3, Table 1): the table, correspondence.json and the masked inputs

    overfeat-visualize --mode=top9 --model_dir=runs/zfnet --layer=conv5 --feature=0,1,2
    overfeat-visualize --mode=occlusion --model_dir=runs/zfnet --image=dog.jpg \
        --size=48 --stride=8 --layer=conv5
    overfeat-visualize --mode=deconv --model_dir=runs/zfnet --data=embedded --layer=conv3
    overfeat-visualize --mode=filters --model_dir=runs/zfnet
    overfeat-visualize --mode=correspondence --model_dir=runs/zfnet --image=d1.jpg,d2.jpg,d3.jpg \
        --boxes="right eye=60,70,90,100;58,120,88,150;64,90,94,120" --layers=conv5,fc7

Images come from `--image` (comma list of files) or the first `--max_images` of
`--data`'s `--split`; outputs go to `--output_dir` (default <model_dir>/<mode>).
"""

from __future__ import annotations

from absl import flags

from overfeat_tf import cli, flags_common
from overfeat_tf.cli import FlagError
from overfeat_tf.visualization import deconvnet, launch

flags.DEFINE_enum("mode", None, list(launch.MODES), "What to draw.")
flags_common.define_model_dir()
flags_common.define_checkpoint()
flags_common.define_data(default=None)
flags_common.define_data_dir()
flags_common.define_split()
flags.DEFINE_list("image", None, "Image file(s), comma separated (instead of --data).")
flags.DEFINE_integer("max_images", None, "Images of --data (default 8; top9: 512).")
flags.DEFINE_string("layer", None, "Layer (default: conv1 for filters, else the last conv).")
flags.DEFINE_list(
    "feature",
    None,
    "Feature maps of --layer (default: the strongest for deconv/occlusion, 0-15 for top9).",
)
flags.DEFINE_enum("rule", "deconvnet", list(deconvnet.RULES), "ReLU rule on the way down.")
flags.DEFINE_string("output_dir", None, "Where PNGs and arrays go (default <model_dir>/<mode>).")
flags.DEFINE_integer("size", 48, "Occlusion: side of the grey square, pixels.")
flags.DEFINE_integer("stride", 8, "Occlusion: step of the square, pixels.")
flags.DEFINE_float("value", None, "Occlusion: grey level 0-255 (default: the training mean).")
flags.DEFINE_integer("label", None, "Occlusion: correct class of --image (default: top class).")
flags.DEFINE_bool("full_image", False, "Occlusion: whole image (shorter side 256), not the crop.")
flags.DEFINE_multi_string(
    "boxes",
    None,
    "Correspondence: [PART=]y0,x0,y1,x1;y0,x0,y1,x1;... one mask per --image, in order, pixels "
    "of the model input (the centre crop: shorter side 256, then the central input_size "
    "square), end exclusive. Repeat for more parts.",
)
flags.DEFINE_list(
    "layers",
    None,
    "Correspondence: layers (default: the last conv and the last hidden FC, "
    "ZFNet's layers 5 and 7).",
)
flags.DEFINE_integer("draws", 10, "Correspondence: random masks per part (the baseline).")
flags_common.define_seed("Correspondence: seed of the random masks.")
flags.DEFINE_float(
    "zero_tolerance",
    1e-4,
    "Correspondence: |eps| up to this times the layer's largest feature is sign 0.",
)
flags_common.define_batch_size(32, "Images per forward pass.")
flags_common.define_onednn()

FLAGS = flags.FLAGS


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise FlagError(f"Unexpected arguments: {' '.join(argv[1:])}")
    fields = {f: FLAGS[f].value for f in launch.VisualizeSpec.__dataclass_fields__}
    lists = ("image", "feature", "boxes", "layers")
    fields.update({f: tuple(fields[f]) for f in lists if fields[f] is not None})
    for path in launch.run(launch.VisualizeSpec(**fields)):
        print(path)
    return 0


def run() -> None:
    """Console-script entry point (`overfeat-visualize`)."""
    cli.run(main, "overfeat-visualize", (launch.SpecError,))


if __name__ == "__main__":
    run()
