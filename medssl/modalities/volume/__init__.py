"""CT/MRI volumes: NIfTI, DICOM series, NRRD and npz readers, orientation, spacing and
intensity preprocessing, a memory-mapped cache, and the "volume" adapter.
"""

from medssl.modalities.volume.adapter import VolumeModality, VolumePreprocessing
from medssl.modalities.volume.readers import read_volume
from medssl.modalities.volume.volume import Volume

__all__ = ["Volume", "VolumeModality", "VolumePreprocessing", "read_volume"]
