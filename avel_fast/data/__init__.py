"""The AVE data layer (SPEC §3): readers and validation of the real files, synthetic AVE, resident batches."""
from avel_fast.data.annotations import read_annotations, read_split
from avel_fast.data.errors import AVEFormatError, AVEFormatWarning

__all__ = ["AVEFormatError", "AVEFormatWarning", "read_annotations", "read_split"]
