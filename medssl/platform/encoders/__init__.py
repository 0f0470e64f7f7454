"""Encoders: networks that turn a batch into a global vector and, with a decoder, a dense map.
Importing this package registers the MONAI encoders in `ENCODERS`."""

from __future__ import annotations

from medssl.platform.encoders.base import Encoder, EncoderOutput, SegmentationNet
from medssl.platform.encoders.factory import (
    architecture_of,
    build_encoder,
    encoder_from_architecture,
    encoder_options,
)
from medssl.platform.encoders.resnet import ResNetEncoder
from medssl.platform.encoders.segresnet import SegResNetEncoder
from medssl.platform.encoders.swinunetr import SwinUNETREncoder
from medssl.platform.encoders.unet import UNetEncoder

__all__ = [
    "Encoder",
    "EncoderOutput",
    "ResNetEncoder",
    "SegResNetEncoder",
    "SegmentationNet",
    "SwinUNETREncoder",
    "UNetEncoder",
    "architecture_of",
    "build_encoder",
    "encoder_from_architecture",
    "encoder_options",
]
