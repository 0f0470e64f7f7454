"""Hugging Face models and tokenizers read from local folders only: the optional packages
imported on demand, the folder checked before transformers sees it (so nothing is fetched)."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from medssl.platform.errors import ConfigError

#: Where the user names the model folder (the tokenizer and the weights are one folder).
MODEL_KEY = "data.preprocessing.text.model"
#: The extra that installs transformers and peft.
EXTRA_HINT = "pip install 'medssl[text-hf]'"


def import_hf(package: str, purpose: str) -> Any:
    """`package` (transformers or peft), imported now; ConfigError with the install line when
    it is missing, so a run without the extra never imports either."""
    try:
        return importlib.import_module(package)
    except ImportError as error:
        raise ConfigError(
            f"{purpose} needs the {package} package ({error}); install it with {EXTRA_HINT}"
        ) from None


def model_folder(folder: str | Path, key: str = MODEL_KEY) -> Path:
    """`folder` as a resolved Path, after checking it is a model folder (a config.json
    inside); ConfigError naming `key` otherwise. A path that is not a folder is never handed
    to transformers, which would take it for a hub name."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise ConfigError(
            f"{key}: {folder} is not a folder; name a local Hugging Face model folder "
            "(config.json, the weights and the tokenizer files, e.g. from save_pretrained); "
            "nothing is downloaded"
        )
    if not (path / "config.json").is_file():
        raise ConfigError(
            f"{key}: {folder} has no config.json, so it is not a Hugging Face model folder; "
            "save the model there with save_pretrained"
        )
    return path.resolve()


@contextmanager
def quiet_loading(transformers: Any) -> Iterator[None]:
    """transformers' weight-loading progress bars off while loading one model (they would
    interleave with the run's own progress), and back as they were after."""
    logging = transformers.utils.logging
    was_on = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            logging.enable_progress_bar()
