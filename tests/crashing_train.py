"""`overfeat_tf.bin.train` that kills itself with SIGKILL at a named moment.

    python tests/crashing_train.py MOMENT COUNT [overfeat-train flags]

MOMENT and where the COUNT-th occurrence in this process dies:
  step        a training step has updated the weights in memory, nothing is saved yet;
  checkpoint  a checkpoint's files are written, the manager has not recorded it as the
              latest (the `checkpoint` state file still names the previous one);
  evaluation  an epoch-end evaluation has run a batch;
  export      the SavedModel is written under its temporary name, not yet renamed.
The test of faults runs this repeatedly, resuming after each kill.
"""

import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import overfeat_tf  # noqa: E402,F401  (first: oneDNN)
import tensorflow as tf  # noqa: E402
from export import saved_model  # noqa: E402
from overfeat_tf.bin import train  # noqa: E402
from overfeat_tf.training import trainer  # noqa: E402


def _dies_on(count: int, fn, before: bool = False):
    """`fn`, killing the process after (or `before`) its `count`-th call."""
    calls = [0]

    def die() -> None:
        print(f"crashing_train: SIGKILL at call {count} of {fn}", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    def wrapped(*args, **kwargs):
        calls[0] += 1
        if before and calls[0] == count:
            die()
        result = fn(*args, **kwargs)
        if calls[0] == count:
            die()
        return result

    return wrapped


def main() -> None:
    moment, count = sys.argv[1], int(sys.argv[2])
    del sys.argv[1:3]
    if moment == "checkpoint":
        # The manager records each save twice (before and after deleting old ones).
        manager = tf.train.CheckpointManager
        manager._record_state = _dies_on(2 * count - 1, manager._record_state, before=True)
    elif moment in ("step", "evaluation"):
        init = trainer.Trainer.__init__

        def patched_init(self, *args, **kwargs):
            init(self, *args, **kwargs)
            if moment == "step":
                self._train_fns = {x: _dies_on(count, f) for x, f in self._train_fns.items()}
            else:
                self._eval_fn = _dies_on(count, self._eval_fn)

        trainer.Trainer.__init__ = patched_init
    elif moment == "export":
        saved_model.write_warmup_requests = _dies_on(count, saved_model.write_warmup_requests)
    elif moment != "checkpoint":
        sys.exit(f"crashing_train: unknown moment {moment!r}")
    train.run()


if __name__ == "__main__":
    main()
