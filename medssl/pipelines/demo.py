"""`medssl demo`: the embedded default. Synthetic CT phantoms are written as real NIfTI
files and a DICOM series, read back through the normal readers, pretrained on, and a
segmenter fine-tuned with 2 labelled phantoms is compared with one trained from scratch."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from medssl.pipelines import presets
from medssl.pipelines.report import results_table
from medssl.pipelines.runner import run_config
from medssl.platform.config import load_config
from medssl.platform.io import atomic_write

DEMO_PRESET = "demo-phantoms"


def demo(
    out: str | Path = "runs/demo", *, subjects: int = 10, overrides: Iterable[str] = ()
) -> dict[str, Any]:
    """Generate the phantom cohort under `out/data` (once), run the demo pipeline in `out`,
    and print the Dice table. Returns the report."""
    from medssl.synthetic import write_cohort

    run_dir = Path(out)
    manifest = run_dir / "data" / "manifest.csv"
    if not manifest.is_file():
        print(f"writing {subjects} synthetic CT phantoms to {manifest.parent} ...", flush=True)
        manifest = write_cohort(manifest.parent, n_subjects=subjects, seed=0, dicom_subjects=1)
    config = load_config(
        [presets.resolve(DEMO_PRESET)], [f"data.path={manifest}", *overrides]
    )
    report = run_config(config, run_dir)
    dice = [r for r in report["results"] if r["metric"].startswith("dice")]
    print("\nDice on held-out phantoms (pretrained vs from scratch, same labelled phantoms):")
    print(results_table(dice))
    print(f"\nreport: {run_dir / 'report.md'}")
    return report


def write_phantom_dataset(
    out: str | Path,
    subjects: int = 16,
    modality: str = "ct",
    seed: int = 0,
    unlabelled: Iterable[str | Path] = (),
) -> Path:
    """`medssl phantoms`: a labelled phantom cohort in `out`, plus `unlabelled` scans listed
    (by absolute path, one subject each) without a mask. Returns the manifest."""
    import csv

    from medssl.platform.errors import ConfigError
    from medssl.synthetic import write_cohort

    extra = [Path(p).resolve() for p in unlabelled]
    missing = [str(p) for p in extra if not p.exists()]
    if missing:
        raise ConfigError(f"--unlabelled: {', '.join(missing)} does not exist; check the path")
    try:
        manifest = write_cohort(out, n_subjects=subjects, seed=seed, dicom_subjects=0,
                                modality=modality)
    except ValueError as err:
        raise ConfigError(f"phantoms: {err}") from None
    if extra:
        rows = list(csv.DictReader(manifest.open()))
        rows += [{"subject_id": f"unlabelled_{k:03d}", "image": str(p), "label": ""}
                 for k, p in enumerate(extra)]

        def write(tmp: Path) -> None:
            with tmp.open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=["subject_id", "image", "label"])
                writer.writeheader()
                writer.writerows(rows)

        atomic_write(manifest, write)
    return manifest

