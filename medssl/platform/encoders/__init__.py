"""Encoders: networks that turn a batch into a global vector and, with a decoder, a dense map.
Importing this package registers the MONAI, TS2Vec, tsai and 1-D EfficientNet encoders in
`ENCODERS`."""

from __future__ import annotations

from medssl.platform.encoders.base import Encoder, EncoderOutput, SegmentationNet
from medssl.platform.encoders.ecg_patch import ECGPatchEncoder
from medssl.platform.encoders.efficientnet1d import EfficientNet1DEncoder
from medssl.platform.encoders.factory import (
    architecture_of,
    build_encoder,
    check_encoder,
    encoder_from_architecture,
    encoder_options,
)
from medssl.platform.encoders.resnet import ResNetEncoder
from medssl.platform.encoders.segresnet import SegResNetEncoder
from medssl.platform.encoders.swinunetr import SwinUNETREncoder
from medssl.platform.encoders.ts2vec import TS2VecEncoder, causal_sliding_representations
from medssl.platform.encoders.tsai import TsaiEncoder
from medssl.platform.encoders.unet import UNetEncoder

__all__ = [
    "ECGPatchEncoder",
    "EfficientNet1DEncoder",
    "Encoder",
    "EncoderOutput",
    "ResNetEncoder",
    "SegResNetEncoder",
    "SegmentationNet",
    "SwinUNETREncoder",
    "TS2VecEncoder",
    "TsaiEncoder",
    "UNetEncoder",
    "architecture_of",
    "build_encoder",
    "causal_sliding_representations",
    "check_encoder",
    "encoder_from_architecture",
    "encoder_options",
]
