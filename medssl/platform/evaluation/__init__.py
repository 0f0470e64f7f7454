"""Evaluation: segmentation and classification metrics, frozen-feature extraction, and the
linear and kNN probes. Submodules are imported on use (scikit-learn and MONAI are heavy)."""
