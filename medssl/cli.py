"""The `medssl` command: parses arguments, then calls the pipelines. Nothing imports this."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Self-supervised pretraining and label-efficient fine-tuning for medical data.",
)

CONFIGS = typer.Argument(
    help="Pipeline YAML files or preset names (stacked, later wins) followed by key.path=value overrides.",
)
OUT = typer.Option("--out", "-o", help="Run folder (rerunning the same folder resumes).")


def _split(args: list[str]) -> tuple[list[str], list[str]]:
    paths = [a for a in args if "=" not in a]
    overrides = [a for a in args if "=" in a]
    if not paths:
        raise typer.BadParameter("give at least one pipeline YAML or preset name")
    return paths, overrides


def _guard(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    """Turn errors a user can cause into one message and exit code 1 (no traceback)."""
    from medssl.platform.errors import MedsslError

    try:
        return fn(*args, **kwargs)
    except MedsslError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        typer.secho("interrupted; rerun the same command to resume", err=True)
        raise typer.Exit(130) from None


@app.command()
def run(args: Annotated[list[str], CONFIGS], out: Annotated[Path | None, OUT] = None) -> None:
    """Run every stage of a pipeline and write the run folder with its report."""
    from medssl.pipelines import api

    paths, overrides = _split(args)
    _guard(api.run, paths, overrides, out)


@app.command()
def pretrain(args: Annotated[list[str], CONFIGS], out: Annotated[Path | None, OUT] = None) -> None:
    """Only pretrain (the encoder and its card land in <run>/pretrain)."""
    from medssl.pipelines import api

    paths, overrides = _split(args)
    _guard(api.pretrain, paths, overrides, out)


@app.command()
def probe(
    args: Annotated[list[str], CONFIGS],
    checkpoint: Annotated[Path, typer.Option(help="A pretrained model folder.")],
    out: Annotated[Path | None, OUT] = None,
) -> None:
    """Linear and kNN probes of a pretrained encoder beside random init."""
    from medssl.pipelines import api

    paths, overrides = _split(args)
    _guard(api.probe, paths, checkpoint, overrides, out)


@app.command()
def finetune(
    args: Annotated[list[str], CONFIGS],
    checkpoint: Annotated[
        Path | None, typer.Option(help="A pretrained model folder; without it, scratch only.")
    ] = None,
    out: Annotated[Path | None, OUT] = None,
) -> None:
    """Fine-tune at every label budget beside from-scratch training, then evaluate."""
    from medssl.pipelines import api

    paths, overrides = _split(args)
    _guard(api.finetune, paths, checkpoint, overrides, out)


@app.command()
def embed(
    checkpoint: Annotated[Path, typer.Argument(help="A model folder (model.safetensors + model.json).")],
    data: Annotated[Path, typer.Argument(help="A folder, manifest or array file.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output .npz")] = Path("embeddings.npz"),
) -> None:
    """Global feature vectors of every scan, with subject ids, into an .npz file."""
    from medssl.pipelines.embed import embed as do_embed

    _guard(do_embed, checkpoint, data, out)


@app.command()
def augmenter(
    runs: Annotated[list[Path], typer.Argument(help="Run folders of AutoTCL pretraining.")],
    plot: Annotated[
        bool, typer.Option(help="Also draw p along time to <run>/plots/augmenter.png.")
    ] = True,
) -> None:
    """What an AutoTCL run's learned augmenter keeps of each input channel: its mean keep
    probability and scale over the training series (0 = the views never show that channel),
    and whether its keep probability collapsed into a fixed mask during training."""
    from medssl.pipelines.augmenter import augmenter_channels, verdict_text

    for run in runs:
        target = run / "plots" / "augmenter.png" if plot else None
        rows = _guard(augmenter_channels, run, target)
        print(run)
        verdict = verdict_text(run)
        if verdict is not None:
            print(f"  during training: {verdict}")
        print(f"  {'channel':<8}{'name':<16}{'keep':>8}{'scale':>8}")
        for row in rows:
            print(f"  {row['channel']:<8}{row['name']:<16}{row['keep']:>8.3f}{row['scale']:>8.3f}")
        if target is not None:
            print(f"  plot: {target}")


@app.command()
def validate(
    data: Annotated[Path, typer.Argument(help="A folder, manifest (CSV/JSON) or array file.")],
    modality: Annotated[str, typer.Option(help="Which adapter reads the data.")] = "volume",
) -> None:
    """List every problem of a dataset (one line each), exit 1 if any. Writes nothing."""
    from medssl.pipelines import api

    problems = _guard(api.validate, data, modality)
    for problem in problems:
        print(problem)
    if problems:
        typer.secho(f"{len(problems)} problem(s) in {data}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    print(f"{data}: no problems found")


@app.command()
def reduce(
    data: Annotated[
        Path, typer.Argument(help="A folder, manifest (CSV/JSON) or array file of volumes.")
    ],
    strategy: Annotated[
        str, typer.Option(help="dhash, ssim, mutual_information or every_nth.")
    ] = "dhash",
    threshold: Annotated[
        float | None, typer.Option(help="Duplicate threshold; default: the strategy's own.")
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option(help="Other strategy settings as key=value (repeatable).")
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("reduction"),
) -> None:
    """Drop near-duplicate slices of every volume before pretraining: writes kept.json (the
    kept slices per volume; no file is copied) and reduction.png."""
    import yaml

    from medssl.pipelines import api

    params = {}
    for item in param or []:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"'{item}' must look like key=value", param_hint="--param")
        params[key.strip()] = yaml.safe_load(text) if text.strip() else None
    summary = _guard(api.reduce, data, strategy, threshold, params, out)
    print(
        f"kept {summary['slices_kept']} of {summary['slices_in']} slices ({summary['ratio']:.1%}) "
        f"of {summary['volumes']} volumes -> {out / 'kept.json'}"
    )


@app.command()
def compare(
    runs: Annotated[list[Path], typer.Argument(help="Finished run folders (two or more).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("comparison"),
    seeds: Annotated[
        bool,
        typer.Option(
            "--seeds",
            help="Runs of the same pipeline are seeds: report each result's mean ± std over them.",
        ),
    ] = False,
) -> None:
    """Put the reports of several runs side by side (one column per initialisation; a
    baseline they share, e.g. scratch on the same labelled subset, appears once)."""
    from medssl.pipelines import api

    _guard(api.compare, runs, out, seeds)
    print(f"report: {out / 'report.md'}")


@app.command()
def phantoms(
    out: Annotated[Path, typer.Argument(help="Folder to write the cohort and manifest.csv to.")],
    subjects: Annotated[int, typer.Option(help="Labelled phantoms to generate.")] = 16,
    modality: Annotated[str, typer.Option(help="ct or mr (T1-weighted look, same anatomy).")] = "ct",
    seed: Annotated[int, typer.Option(help="Cohort seed.")] = 0,
    unlabelled: Annotated[
        list[Path] | None,
        typer.Option(help="Scans (files or DICOM folders) added to the manifest without a mask, "
                          "for pretraining only (repeatable)."),
    ] = None,
) -> None:
    """Write a synthetic labelled cohort (NIfTI + labels.json + manifest.csv), optionally with
    real unlabelled scans appended: a dataset for trying pipelines without any download."""
    from medssl.pipelines.demo import write_phantom_dataset

    manifest = _guard(write_phantom_dataset, out, subjects, modality, seed, unlabelled or [])
    print(f"manifest: {manifest}")


@app.command()
def demo(
    out: Annotated[Path, OUT] = Path("runs/demo"),
    subjects: Annotated[int, typer.Option(help="Synthetic CT phantoms to generate.")] = 30,
    overrides: Annotated[list[str] | None, typer.Argument(help="key.path=value overrides")] = None,
) -> None:
    """Generate synthetic CT phantoms, pretrain, fine-tune with 2 labelled phantoms beside
    scratch (3 seeds each), and print the Dice table and whether pretraining was ahead. No
    download; about 4 minutes on 2 idle CPU cores."""
    from medssl.pipelines.demo import demo as do_demo

    _guard(do_demo, out, subjects=subjects, overrides=overrides or [])


@app.command("pair-reports")
def pair_reports(
    images: Annotated[Path, typer.Option(help="MedMNIST-style npz of chest X-rays, 0/1 labels.")],
    reports: Annotated[Path, typer.Option(help="IU X-ray (OpenI) report archive (.tgz).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    ecg: Annotated[
        Path | None,
        typer.Option(help="Beat-annotated WFDB record (path without extension) for ECG triplets."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of every shuffle.")] = 0,
) -> None:
    """Pair X-rays with real reports of the same diagnosis (pneumonia / no acute disease),
    each report once, optionally with ECG windows: a SYNTHETIC pairing (different patients)
    written as manifest.csv + pairing.json (+ ecg.npz)."""
    from medssl.pipelines.report_pairing import build_report_pairing

    summary = _guard(build_report_pairing, images, reports, out, seed=seed, ecg_source=ecg)
    positive, negative = summary.pairs_positive, summary.pairs_negative
    print(
        f"reports: {summary.reports_positive} pneumonia, {summary.reports_negative} no acute "
        f"disease, {summary.reports_unused} unused (of {summary.reports_read})\n"
        f"pairs: {positive + negative} ({positive} positive, {negative} negative)"
    )
    if summary.ecg_file is not None:
        print(
            f"ecg windows: {summary.ecg_windows_abnormal} abnormal, "
            f"{summary.ecg_windows_normal} normal; reused {summary.ecg_reused_abnormal} "
            f"abnormal, {summary.ecg_reused_normal} normal -> {summary.ecg_file}"
        )
    print(f"manifest: {summary.manifest}\npairing: {summary.pairing_json}")


@app.command()
def presets() -> None:
    """List the shipped pipeline presets."""
    from medssl.pipelines.presets import PRESET_DIR, preset_names

    for name in preset_names():
        first = (PRESET_DIR / f"{name}.yaml").read_text().splitlines()[0].lstrip("# ")
        print(f"{name:<28} {first}")


def main() -> None:
    logging.basicConfig(level=os.environ.get("MEDSSL_LOG", "WARNING"), format="%(message)s")
    # Lightning's banner lines ("GPU available: False ...") are noise for a CLI user.
    for noisy in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Three known Lightning messages that say nothing about the user's run.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    warnings.filterwarnings("ignore", message=r"You defined a `validation_step` but have no")
    # Training is counted in steps, so an epoch shorter than the logging interval is normal.
    warnings.filterwarnings("ignore", message=r"The number of training batches \(\d+\) is smaller")
    app()


if __name__ == "__main__":
    sys.exit(main())
