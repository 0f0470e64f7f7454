"""Pipelines: stages chained into runs, downstream tasks and shipped presets."""
