"""What the convnet learned: ZFNet's visualizations (Zeiler & Fergus 2013).

- `deconvnet`: projections of single activations down to pixels (section 2.1).
- `top9`: the nine strongest activations of feature maps over a data set (Fig. 2).
- `occlusion`: sensitivity to a grey square slid over the image (section 4.2, Fig. 5).
- `filters`: the first layer's filters as an image grid (Fig. 5, 6).
- `correspondence`: how consistently a part masked in related images changes the
  features, against random masks (section 4.3, Table 1).
- `images`: grids, heat maps and PNG files.
"""

from overfeat_tf.visualization.deconvnet import Deconvnet, ReceptiveField, receptive_field

__all__ = ["Deconvnet", "ReceptiveField", "receptive_field"]
