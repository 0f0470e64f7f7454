"""2-D radiographs: DICOM, PNG, JPEG, MedMNIST-style npz and axial slices of NIfTI volumes,
per-image intensity normalisation, aspect-preserving resize and pad, a memory-mapped cache, and
the "image" adapter.
"""

from medssl.modalities.image.adapter import ImageModality, ImagePreprocessing
from medssl.modalities.image.readers import Radiograph, read_image

__all__ = ["ImageModality", "ImagePreprocessing", "Radiograph", "read_image"]
