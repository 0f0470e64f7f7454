"""The shared core of medssl: batches, losses, methods, augmentation, engine and evaluation.

It knows no file format and no modality; adapters hand it `Batch`es.
"""
