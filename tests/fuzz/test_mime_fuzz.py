"""A bounded, reproducible atheris run over the MIME layer, seeded with the corpus's small
messages.

Skips when atheris is not installed (it has wheels for Linux x86_64 only). The run is fixed:
libFuzzer seed 1, a fixed number of executions (TAYORI_FUZZ_RUNS), a fixed seed order and
PYTHONHASHSEED=0, so a failure here fails the same way on the next run and on a developer's
machine. Some values the instrumented code compares depend on memory addresses, and
libFuzzer feeds compared values back into its mutations, so address randomisation is
switched off for the run with `setarch -R`; where that is not allowed, the run uses
`-use_cmp=0` instead (reproducible, a little weaker). A time cap (TAYORI_FUZZ_SECONDS)
only guards slow machines; when it cuts the run short, the inputs tried are a prefix of the
fixed sequence. Run tests/fuzz/fuzz_mime.py by hand, with other -seed values, for longer
campaigns.

When the run finds a crash, timeout or out-of-memory input, the assertion message shows the
Python traceback and the input's path, and the input is copied to test-artifacts/fuzz/ at
the repository root (gitignored), where it survives the temporary directory. Replay one with
`.venv/bin/python tests/fuzz/fuzz_mime.py test-artifacts/fuzz/crash-...` and add it to
tests/unit/test_mime_regressions.py once fixed.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FUZZ_SEED = 1
FUZZ_RUNS = int(os.environ.get("TAYORI_FUZZ_RUNS", "20000"))
FUZZ_SECONDS = int(os.environ.get("TAYORI_FUZZ_SECONDS", "25"))
HARNESS = Path(__file__).with_name("fuzz_mime.py")
REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts" / "fuzz"
_ARTIFACT_KINDS = ("crash-", "timeout-", "oom-", "leak-", "slow-unit-")
_MAX_SEEDS = 300
_MAX_SEED_SIZE = 20_000


def _write_seeds(corpus_dir: Path, seeds: Path) -> None:
    """The smallest tricky messages, in an order that does not depend on the file system."""
    tricky = corpus_dir / "tricky"
    small = sorted(
        (
            (p.stat().st_size, p.relative_to(tricky).as_posix(), p)
            for p in tricky.rglob("*")
            if p.is_file() and p.stat().st_size < _MAX_SEED_SIZE
        ),
    )
    for index, (_size, _name, path) in enumerate(small[:_MAX_SEEDS]):
        shutil.copyfile(path, seeds / f"seed{index:03d}")


def _without_aslr() -> list[str]:
    """`setarch <machine> -R` when it works here (Docker's default seccomp profile refuses
    it). Some values the instrumented code compares depend on where objects sit in memory,
    and libFuzzer feeds compared values back into its mutations, so with address
    randomisation two runs with the same seed drift apart within a few hundred executions."""
    setarch = shutil.which("setarch")
    if setarch is None:
        return []
    prefix = [setarch, platform.machine(), "-R"]
    try:
        probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return []
    return prefix if probe.returncode == 0 else []


def _python_exception(output: str) -> str:
    """The "Uncaught Python exception" block atheris prints, up to libFuzzer's summary."""
    lines = output.splitlines()
    start = next((i for i, line in enumerate(lines) if "Uncaught Python exception" in line), None)
    if start is None:
        return ""
    end = next(
        (i for i in range(start, len(lines)) if lines[i].startswith("SUMMARY: libFuzzer")),
        len(lines) - 1,
    )
    return "\n".join(lines[start : end + 1])


def _keep_artifacts(found: list[Path]) -> list[Path]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    kept = []
    for path in found:
        target = ARTIFACTS / path.name
        shutil.copyfile(path, target)
        kept.append(target)
    return kept


@pytest.mark.slow
def test_fuzz_mime_parser(corpus_dir: Path, tmp_path: Path) -> None:
    if importlib.util.find_spec("atheris") is None:
        pytest.skip("atheris is not installed on this platform")
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    _write_seeds(corpus_dir, seeds)
    grown = tmp_path / "grown"  # new inputs go here; the seed directory stays as written
    grown.mkdir()
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    no_aslr = _without_aslr()
    # Without that, libFuzzer must not use compared values (-use_cmp=0) to stay reproducible.
    reproducible = [] if no_aslr else ["-use_cmp=0"]
    command = [
        *no_aslr,
        sys.executable,
        str(HARNESS),
        str(grown),
        str(seeds),
        f"-seed={FUZZ_SEED}",
        f"-runs={FUZZ_RUNS}",
        f"-max_total_time={FUZZ_SECONDS}",
        "-timeout=10",
        "-rss_limit_mb=2048",
        "-max_len=65536",
        "-reload=0",  # rereading the corpus directory every second depends on timing
        *reproducible,
        "-print_final_stats=1",
        f"-artifact_prefix={artifacts}/",
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    try:
        result = subprocess.run(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,  # atheris prints the traceback on stdout: keep the order
            text=True,
            errors="replace",
            timeout=FUZZ_SECONDS + 60,
            check=False,
            env=env,
        )
        output, returncode = result.stdout, result.returncode
    except subprocess.TimeoutExpired as expired:
        raw = expired.stdout or b""
        output = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        returncode = None
    found = sorted(p for p in artifacts.iterdir() if p.name.startswith(_ARTIFACT_KINDS))
    kept = _keep_artifacts(found) if found else []
    if returncode == 0 and not found:
        return
    exception = _python_exception(output) or "(no Python exception printed)"
    tail = "\n".join(output.splitlines()[-15:])
    inputs = "\n".join(f"  {path}" for path in kept) or "  (none written)"
    pytest.fail(
        f"atheris run failed (exit status {returncode}).\n"
        f"Replay an input: {sys.executable} {HARNESS} <input>\n"
        f"The whole run: {' '.join(command)}\n"
        f"Inputs kept:\n{inputs}\n\n{exception}\n\nLast lines of its output:\n{tail}",
        pytrace=False,
    )
