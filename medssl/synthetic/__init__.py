"""Synthetic data written as real files, so the demo and the tests have a labelled dataset
without downloading anything: abdominal CT (and T1-like MR) phantoms as NIfTI and DICOM.

This room only writes files; it knows no adapter and no pipeline, and reads nothing back.
"""

from medssl.synthetic.anatomy import HU_RANGES, LABEL_MAP, generate_phantom, mr_from_ct
from medssl.synthetic.cohort import subject_seed, write_cohort
from medssl.synthetic.writers import PATIENT_NAME, write_dicom_series, write_nifti

__all__ = [
    "HU_RANGES",
    "LABEL_MAP",
    "PATIENT_NAME",
    "generate_phantom",
    "mr_from_ct",
    "subject_seed",
    "write_cohort",
    "write_dicom_series",
    "write_nifti",
]
