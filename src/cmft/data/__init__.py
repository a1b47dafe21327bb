"""Data: tracklets, dataset readers, frame sampling, preprocessing, the cross-modal sampler, clip transforms, loaders."""

from cmft.data.datasets.hitsz_vcm import decode_frame_name, load_hitsz_vcm
from cmft.data.errors import DatasetFormatError
from cmft.data.datasets.regdb import load_regdb
from cmft.data.datasets.registry import DATASETS, detect_dataset, load_dataset
from cmft.data.datasets.sysu_mm01 import load_sysu_mm01, sysu_gallery, sysu_query
from cmft.data.loader import ClipDataset, ClipSpec, CrossModalPairDataset, build_test_loader, build_train_loader
from cmft.data.preprocess import frames_to_clip, model_input, normalize_clips, read_frames
from cmft.data.samplers import CrossModalIdentitySampler
from cmft.data.sampling import frame_pools, sample_frame_indices
from cmft.data.summary import dataset_summary, split_counts
from cmft.data.transforms import ClipAugment, build_clip_transform
from cmft.data.types import DIRECTIONS, MODALITIES, Direction, Modality, Tracklet, VIDataset

__all__ = [
    "DATASETS", "detect_dataset", "load_dataset", "load_regdb", "load_sysu_mm01", "sysu_gallery", "sysu_query",
    "DIRECTIONS", "MODALITIES", "ClipAugment", "ClipDataset", "ClipSpec", "CrossModalIdentitySampler", "CrossModalPairDataset",
    "DatasetFormatError", "Direction", "Modality", "Tracklet", "VIDataset", "build_clip_transform",
    "build_test_loader", "build_train_loader", "dataset_summary", "decode_frame_name", "frame_pools",
    "frames_to_clip", "load_hitsz_vcm", "model_input", "normalize_clips", "read_frames", "sample_frame_indices", "split_counts",
]
