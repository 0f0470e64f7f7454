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

DEMO_PRESET = "demo-phantoms"


def demo(
    out: str | Path = "runs/demo", *, subjects: int = 10, overrides: Iterable[str] = ()
) -> dict[str, Any]:
    """Generate the phantom cohort under `out/data` (once), run the demo pipeline in `out`,
    and print the Dice table. Returns the report."""
    from medssl.modalities.volume.phantoms import write_cohort

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
