"""Modality adapters: they read files, preprocess once into a cache, and collate Batches.

Importing this package registers every adapter in `medssl.platform.registry.MODALITIES`.
"""

from medssl.modalities import biosignal as biosignal  # noqa: F401  (registers "biosignal")
from medssl.modalities import image as image  # noqa: F401  (registers "image")
from medssl.modalities import timeseries as timeseries  # noqa: F401  (registers "timeseries")
from medssl.modalities import volume as volume  # noqa: F401  (registers "volume")
