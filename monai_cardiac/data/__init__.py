"""Readers of cine datasets (ACDC, UK Biobank, DICOM), data lists and the synthetic cine phantom."""

from __future__ import annotations

from .acdc import acdc_datalist, read_info_cfg
from .datalist import cine_header_shape, expand_slices, split_by_subject
from .dicom import dicom_datalist, read_dicom_cine
from .nifti import Cine, read_nifti_cine, read_nifti_ddf, read_nifti_dense_labels, read_nifti_labels
from .phantom import PHANTOM_GROUPS, make_cine_phantom, write_phantom_dataset
from .screening import ScreenedSubjects, screen_subjects
from .ukbb import UKBB_LABEL_MAP, ukbb_datalist

__all__ = [
    "Cine",
    "PHANTOM_GROUPS",
    "ScreenedSubjects",
    "UKBB_LABEL_MAP",
    "acdc_datalist",
    "cine_header_shape",
    "dicom_datalist",
    "expand_slices",
    "make_cine_phantom",
    "read_dicom_cine",
    "read_info_cfg",
    "read_nifti_cine",
    "read_nifti_ddf",
    "read_nifti_dense_labels",
    "read_nifti_labels",
    "screen_subjects",
    "split_by_subject",
    "ukbb_datalist",
    "write_phantom_dataset",
]
