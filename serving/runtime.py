"""TensorFlow settings the serving process makes before TensorFlow is imported (they cannot change afterwards).

oneDNN (TensorFlow's `_Mkl*` kernels, on by default in the x86 pip wheel) is off in the server by default:
TF Serving's stock `tensorflow_model_server` is built without it, and for this project's one-row requests its
per-op primitive set-up dominates. Traced on the benchmark model: 12 small `_MklEinsum` and 5 layer-norm
`_MklNativeFusedBatchNormV3` took ~2.7 ms of a ~5.5 ms signature call; with the plain kernels the whole call
takes ~2.2 ms (docs/serving.md, "Where the time goes"). `--enable_onednn` turns it back on, e.g. for large
batches where oneDNN's kernels pay off.
"""
from __future__ import annotations

import os
import sys

ONEDNN_ENV = "TF_ENABLE_ONEDNN_OPTS"


def tensorflow_environment(enable_onednn: bool) -> dict[str, str]:
    """The environment variables a serving process needs set before `import tensorflow`."""
    return {ONEDNN_ENV: "1" if enable_onednn else "0"}


def configure_tensorflow(enable_onednn: bool) -> None:
    """Sets `tensorflow_environment` in this process; an error if TensorFlow was already imported with another
    setting, because the choice would then silently not apply."""
    wanted = tensorflow_environment(enable_onednn)
    if "tensorflow" in sys.modules:
        differing = {name: value for name, value in wanted.items() if os.environ.get(name) != value}
        if differing:
            raise RuntimeError(f"TensorFlow is already imported in this process, so {differing} cannot take effect; "
                               "set them before importing TensorFlow")
        return
    os.environ.update(wanted)
