"""The AVE data layer (docs/data.md): readers and validation of the real files, synthetic AVE, resident batches."""
from avel_fast.data.annotations import read_annotations, read_split
from avel_fast.data.dataset import AVEData, pool_visual
from avel_fast.data.errors import AVEFormatError, AVEFormatWarning
from avel_fast.data.files import ValidationReport, load_ave, split_labels, validate_ave_dir
from avel_fast.data.resident import Batch, ResidentDataset
from avel_fast.data.synthetic import SyntheticConfig, SyntheticLabels, synthetic_ave, synthetic_labels
from avel_fast.data.writer import write_ave, write_synthetic_ave

__all__ = [
    "AVEData",
    "AVEFormatError",
    "AVEFormatWarning",
    "Batch",
    "ResidentDataset",
    "SyntheticConfig",
    "SyntheticLabels",
    "ValidationReport",
    "load_ave",
    "pool_visual",
    "read_annotations",
    "read_split",
    "split_labels",
    "synthetic_ave",
    "synthetic_labels",
    "validate_ave_dir",
    "write_ave",
    "write_synthetic_ave",
]
