"""A bounded atheris run over the MIME layer, seeded with the corpus's small messages.

Skips when atheris is not installed (it has wheels for Linux x86_64 only). The run is short
here (FUZZ_SECONDS); run tests/fuzz/fuzz_mime.py by hand for longer campaigns.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FUZZ_SECONDS = int(os.environ.get("TAYORI_FUZZ_SECONDS", "20"))
HARNESS = Path(__file__).with_name("fuzz_mime.py")


@pytest.mark.slow
def test_fuzz_mime_parser(corpus_dir: Path, tmp_path: Path) -> None:
    if importlib.util.find_spec("atheris") is None:
        pytest.skip("atheris is not installed on this platform")
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    small = sorted(
        (
            p
            for p in (corpus_dir / "tricky").rglob("*")
            if p.is_file() and p.stat().st_size < 20_000
        ),
        key=lambda p: p.stat().st_size,
    )
    for index, path in enumerate(small[:300]):
        shutil.copyfile(path, seeds / f"seed{index}")
    result = subprocess.run(
        [
            sys.executable,
            str(HARNESS),
            str(seeds),
            f"-max_total_time={FUZZ_SECONDS}",
            "-timeout=10",
            "-rss_limit_mb=2048",
            "-max_len=65536",
            f"-artifact_prefix={tmp_path}/",
        ],
        capture_output=True,
        text=True,
        timeout=FUZZ_SECONDS + 120,
        check=False,
    )
    tail = "\n".join(result.stderr.splitlines()[-30:])
    assert result.returncode == 0, tail
    assert not list(tmp_path.glob("crash-*")) and not list(tmp_path.glob("timeout-*")), tail
