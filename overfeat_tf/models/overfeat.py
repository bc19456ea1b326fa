"""OverFeat fast (Sermanet et al. 2013, Table 1) and accurate (Table 3) models.

No LRN; pooling does not overlap. Dropout 0.5 on the outputs of the first two FC layers
(fc6, fc7 for fast; fc7, fc8 for accurate; section 3.1), so the layers after them are
fed from dropout.
"""

from overfeat_tf.models.spec import FC, ArchSpec, Conv, Pool

# Table 1, input 231: 56 -> 28 -> 24 -> 12 -> 12 -> 12 -> 12 -> 6 -> 1.
OVERFEAT_FAST = ArchSpec(
    trunk=(
        Conv("conv1", 96, 11, stride=4),
        Pool("pool1", 2, 2),
        Conv("conv2", 256, 5),
        Pool("pool2", 2, 2),
        Conv("conv3", 512, 3, pad=1),
        Conv("conv4", 1024, 3, pad=1),
        Conv("conv5", 1024, 3, pad=1),
    ),
    last_pool=Pool("pool5", 2, 2),
    head=(
        FC("fc6", 3072, kernel=6, dropout=True),
        FC("fc7", 4096, dropout=True),
        FC("fc8", None),
    ),
)

# Table 3, input 221: 108 -> 36 -> 30 -> 15 -> 15 -> 15 -> 15 -> 15 -> 5 -> 1.
OVERFEAT_ACCURATE = ArchSpec(
    trunk=(
        Conv("conv1", 96, 7, stride=2),
        Pool("pool1", 3, 3),
        Conv("conv2", 256, 7),
        Pool("pool2", 2, 2),
        Conv("conv3", 512, 3, pad=1),
        Conv("conv4", 512, 3, pad=1),
        Conv("conv5", 1024, 3, pad=1),
        Conv("conv6", 1024, 3, pad=1),
    ),
    last_pool=Pool("pool6", 3, 3),
    head=(
        FC("fc7", 4096, kernel=5, dropout=True),
        FC("fc8", 4096, dropout=True),
        FC("fc9", None),
    ),
)
