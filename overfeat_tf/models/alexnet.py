"""AlexNet (Krizhevsky et al. 2012, Fig. 2) and ZFNet (Zeiler & Fergus 2013, Fig. 3).

Input 227 for AlexNet: the paper's "224" does not give its 55x55 conv1 map, 227 does.
Conv2, conv4 and conv5 are the paper's two towers (groups=2); conv3 and the FC layers
connect across towers. AlexNet biases are 1 in conv2, conv4, conv5, fc6, fc7
(AlexNet section 5). Dropout 0.5 on the outputs of fc6 and fc7
(section 4.2), so fc7 and fc8 are fed from dropout and pool5 is never dropped.
ZFNet: 7x7 / 2 conv1, 5x5 / 2 conv2, no towers, pools round up (110 -> 55, 26 -> 13,
13 -> 6), LRN after the pool, biases 0 (ZFNet section 3).
"""

from overfeat_tf.models.spec import FC, ArchSpec, Conv, Norm, Pool

# AlexNet Fig. 2 / section 3: 55 -> 27 -> 13 -> 13 -> 13 -> 6.
ALEXNET = ArchSpec(
    trunk=(
        Conv("conv1", 96, 11, stride=4),
        Norm("norm1"),
        Pool("pool1", 3, 2),
        Conv("conv2", 256, 5, pad=2, groups=2, bias=1.0),
        Norm("norm2"),
        Pool("pool2", 3, 2),
        Conv("conv3", 384, 3, pad=1),
        Conv("conv4", 384, 3, pad=1, groups=2, bias=1.0),
        Conv("conv5", 256, 3, pad=1, groups=2, bias=1.0),
    ),
    last_pool=Pool("pool5", 3, 2),
    head=(
        FC("fc6", 4096, kernel=6, dropout=True, bias=1.0),
        FC("fc7", 4096, dropout=True, bias=1.0),
        FC("fc8", None),
    ),
)

# ZFNet Fig. 3: 110 -> 55 -> 26 -> 13 -> 13 -> 13 -> 6.
ZFNET = ArchSpec(
    trunk=(
        Conv("conv1", 96, 7, stride=2, pad=1),
        Pool("pool1", 3, 2, ceil=True),
        Norm("norm1"),
        Conv("conv2", 256, 5, stride=2),
        Pool("pool2", 3, 2, ceil=True),
        Norm("norm2"),
        Conv("conv3", 384, 3, pad=1),
        Conv("conv4", 384, 3, pad=1),
        Conv("conv5", 256, 3, pad=1),
    ),
    last_pool=Pool("pool5", 3, 2, ceil=True),
    head=(
        FC("fc6", 4096, kernel=6, dropout=True),
        FC("fc7", 4096, dropout=True),
        FC("fc8", None),
    ),
)
