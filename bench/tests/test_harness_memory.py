"""Memory by phase: the peak of the service's process tree (children included) is kept per phase."""

import subprocess
import sys

PARENT = """
import subprocess, sys
print("up", flush=True)
sys.stdin.readline()
child = subprocess.Popen([sys.executable, "-c",
    "import sys; b = bytearray(64 << 20); b[::4096] = b'x' * len(b[::4096]); print('big', flush=True); sys.stdin.read()"],
    stdout=subprocess.PIPE, stdin=subprocess.PIPE)
print(child.stdout.readline().decode().strip(), flush=True)
sys.stdin.read()
child.stdin.close()
child.wait()
"""


def test_each_phase_keeps_its_peak_and_a_child_counts() -> None:
    from harness.memory import MemorySampler

    with subprocess.Popen([sys.executable, "-c", PARENT], stdin=subprocess.PIPE, stdout=subprocess.PIPE) as tree:
        assert tree.stdin is not None and tree.stdout is not None
        assert tree.stdout.readline() == b"up\n"
        sampler = MemorySampler(tree.pid)
        alone_kb = sampler.sample()
        sampler.enter("with a child")
        tree.stdin.write(b"go\n")
        tree.stdin.flush()
        assert tree.stdout.readline() == b"big\n"
        with_child_kb = sampler.sample()
        tree.stdin.close()  # the tree exits; the context waits for it
    assert with_child_kb >= alone_kb + 64 * 1024
    res = sampler.results()
    assert list(res["rss_by_phase_mb"]) == ["start", "with a child"]
    assert res["rss_peak_phase"] == "with a child"
    assert res["rss_max_mb"] == round(with_child_kb / 1024, 1)
