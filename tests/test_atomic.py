"""Atomic outputs: a writer killed with SIGKILL midway leaves the previous file intact.

A real Python process writes a large score table with :func:`keyltv.data.outputs.write_table`;
the test watches the temporary file grow and kills the process while it is half
written. The previous file must be byte-for-byte unchanged and no partial or temporary
file may be left in the folder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

WRITER = """
import sys
import numpy as np
import pandas as pd
from keyltv.data.outputs import write_table

rng = np.random.default_rng(0)
n = 1_000_000
frame = pd.DataFrame({"customer_id": np.char.zfill(rng.integers(0, 10**6, n).astype(str), 7),
                      "predicted_value": rng.gamma(2.0, 500.0, n),
                      "p_alive": rng.random(n), "tier": rng.choice(list("ABCD"), n)})
print("writing", flush=True)
write_table(frame, sys.argv[1])
print("done", flush=True)
"""


def bytes_written(pid: int, folder: Path) -> int:
    """Size of the files that process ``pid`` holds open in ``folder`` (Linux /proc)."""
    fd_dir = Path(f"/proc/{pid}/fd")
    size = 0
    for fd in fd_dir.iterdir():
        try:
            if os.readlink(fd).startswith(str(folder)):
                size += os.stat(fd).st_size
        except OSError:
            continue
    return size


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="watches the write in /proc")
def test_writer_killed_midway_leaves_the_previous_file_and_no_partial_one(tmp_path):
    out = tmp_path / "scores.csv"
    previous = b"customer_id,predicted_value\n0000042,1234.5\n"
    out.write_bytes(previous)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(out)], stdout=subprocess.PIPE,
                              env=env, text=True)
    try:
        assert writer.stdout.readline().strip() == "writing"
        deadline = time.monotonic() + 120
        while bytes_written(writer.pid, tmp_path) < 2_000_000:  # midway through ~50 MB
            assert writer.poll() is None, "the writer finished before it could be killed"
            assert time.monotonic() < deadline, "the writer never started writing"
            time.sleep(0.01)
        os.kill(writer.pid, signal.SIGKILL)
        assert writer.wait(timeout=60) == -signal.SIGKILL
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
        writer.stdout.close()
    assert out.read_bytes() == previous
    assert [p.name for p in tmp_path.iterdir()] == ["scores.csv"]
