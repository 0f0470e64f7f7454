"""Downstream tasks that fine-tune a (pretrained) encoder: segmentation and classification.

Importing this package registers them in `medssl.platform.registry.TASKS`.
"""

from medssl.pipelines.tasks import classification as classification  # noqa: F401
from medssl.pipelines.tasks import segmentation as segmentation  # noqa: F401
