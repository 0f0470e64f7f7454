"""The training engine: Lightning modules, the trainer factory, callbacks and DDP helpers."""
