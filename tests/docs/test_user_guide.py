"""The user guide's runnable examples, run as written (with a smaller encoder and fewer steps),
so that a change which breaks them fails here and not in a reader's terminal."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "user-guide.md"
FAST = [
    "encoder.kwargs={hidden_dim: 8, output_dim: 16, depth: 1}",
    "pretrain.max_steps=2",
]

pytestmark = pytest.mark.slow


def _section(title: str) -> str:
    text = GUIDE.read_text()
    start = text.index(title)
    following = re.search(r"^#{2,3} ", text[start + len(title):], flags=re.M)
    return text[start: start + len(title) + (following.start() if following else len(text))]


def _bash_block(section: str) -> str:
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    assert blocks, "the section has no bash example"
    return blocks[-1]


def test_time_series_example_runs_as_written(tmp_path: Path, medssl_cli) -> None:
    block = _bash_block(_section("### Time series (`data.modality: timeseries`)"))
    script = re.search(r"python - <<'PY'\n(.*?)\nPY\n", block, flags=re.S)
    assert script is not None, "the example no longer writes its data with a python heredoc"
    subprocess.run([sys.executable, "-c", script.group(1)], cwd=tmp_path, check=True)

    commands = [shlex.split(line, comments=True) for line in block[script.end():].splitlines()]
    commands = [c for c in commands if c]
    assert [c[:2] for c in commands] == [["medssl", "validate"], ["medssl", "run"],
                                         ["medssl", "embed"]]
    for command in commands:
        args = command[1:] + (FAST if command[1] == "run" else [])
        result = medssl_cli(*args, cwd=tmp_path)
        assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stderr[-3000:]}"

    report = json.loads((tmp_path / "runs" / "waves" / "report.json").read_text())
    accuracy = {r["init"] for r in report["results"]
                if r["stage"] == "probe/svm" and r["metric"] == "accuracy"}
    assert accuracy == {"ts2vec", "random"}
    with np.load(tmp_path / "waves-features.npz") as features:
        assert features["features"].shape == (80, 16)


def test_extension_example_and_error_message_hold() -> None:
    section = _section("## 6. Adding a method or a modality")
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert blocks, "the section has no python example"
    done = subprocess.run([sys.executable, "-c", blocks[0]], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "'visit'" in done.stdout and "'partition'" in done.stdout

    from medssl.pipelines.context import check_compatibility
    from medssl.platform.config import load_config
    from medssl.platform.errors import CompatibilityError

    quoted = re.search(r"`(pretrain\.method\.name: method 'participant'.*?)`", section, re.S)
    assert quoted is not None, "the section no longer quotes the refusal"
    config = load_config(None, ["data.path=x", "data.modality=timeseries",
                                "pretrain.method={name: participant}", "encoder.spatial_dims=1"])
    with pytest.raises(CompatibilityError) as info:
        check_compatibility(config)
    assert str(info.value) == " ".join(quoted.group(1).split())
