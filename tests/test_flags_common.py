"""The shared flag definitions: attributed to the program that calls them, so that its
`--help` (which lists the main module's key flags) shows them."""

import sys

from absl import flags

from overfeat_tf import flags_common
from overfeat_tf.bin import train_flags
from pipelines.bin import flags_common as pipelines_flags


def test_shared_flags_are_key_flags_of_the_calling_module():
    values = flags.FlagValues()
    flags_common.define_data(flag_values=values)
    pipelines_flags.define_data_dir(flag_values=values)
    flags_common.define_batch_size(8, "Images per batch.", flag_values=values)
    flags_common.define_onednn(flag_values=values)
    names = {f.name for f in values.get_key_flags_for_module(sys.modules[__name__])}
    assert names == {"data", "data_dir", "batch_size", "onednn"}


def test_train_flags_are_key_flags_of_the_program():
    values = flags.FlagValues()
    train_flags.define_flags(values)
    names = {f.name for f in values.get_key_flags_for_module(sys.modules[__name__])}
    assert {"model", "data", "model_dir", "recipe", "batch_size", "onednn"} <= names
