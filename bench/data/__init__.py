"""Video data: real layouts (K400, SSv2, list files) and the synthetic world, read through decord.

Public interface: ``build_dataset``, ``ClipSpec``, ``VideoDataset``, ``build_loader``,
``worker_init_fn``, ``DatasetRootError``, ``SynthConfig``, ``make_stills``.
"""
# PyAV must be loaded before decord: decord bundles its own FFmpeg, and loaded first its libraries
# shadow PyAV's (PyAV's libvpx-vp9 encoder then fails to open). Every module here imports through
# this package, so this one line fixes the order.
import av  # noqa: F401  isort: skip

from .dataset import DATASETS, VideoDataset, build_dataset, build_loader, read_index, worker_init_fn
from .decode import VideoDecodeError
from .listfile import AnnotationError, DatasetIndex, ListFileError, VideoEntry
from .robust import AllVideosBrokenError
from .roots import DatasetRootError
from .spec import CLIP_MEAN, CLIP_STD, ClipSpec, ClipSpecError
from .synthetic import Stills, SynthConfig, SynthConfigError, ensure_synthetic, make_stills

__all__ = [
    "AllVideosBrokenError", "CLIP_MEAN", "CLIP_STD", "ClipSpec", "ClipSpecError", "DATASETS", "DatasetIndex",
    "AnnotationError", "DatasetRootError", "ListFileError", "Stills", "SynthConfig", "SynthConfigError", "VideoDataset",
    "VideoDecodeError", "VideoEntry", "build_dataset", "build_loader", "ensure_synthetic", "make_stills",
    "read_index", "worker_init_fn",
]
