"""Wall time of the full default `dvc repro` from a fresh clone, and of a no-op `dvc repro` right after.

Usage: .venv/bin/python benchmarks/pipeline_time.py [--keep]
Clones the committed HEAD into a temp dir (so nothing is reused from this checkout's DVC cache), runs
`dvc repro` twice and prints both times plus each stage's share. Targets (issue 2): full < 10 min on 2 cores,
no-op < 3 s.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return elapsed, result.stdout + result.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keep", action="store_true", help="keep the temp clone for inspection")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="perpetual-bench-"))
    clone = workdir / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        "DVC_SITE_CACHE_DIR": str(workdir / "dvc-site"),
        "TOKENIZERS_PARALLELISM": "false",
    }
    try:
        full, log = timed(["dvc", "repro", "--force"], clone, env)
        noop, _ = timed(["dvc", "repro"], clone, env)
        print(f"full dvc repro from a fresh clone: {full:.1f} s ({full / 60:.2f} min)")
        print(f"no-op dvc repro:                   {noop:.2f} s")
        stages = re.findall(r"Running stage '([^']+)'", log)
        print(f"stages run: {len(stages)}")
        results = clone / "metrics" / "results.md"
        if results.exists():
            print(results.read_text())
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
