"""``python tests/peak_rss.py MODULE ARGS...`` runs ``python -m MODULE ARGS`` in this process and, on
exit (success, refusal or crash), prints ``peak_rss_bytes=N`` as the last line of stderr: the
process's peak resident set size, ``VmHWM`` of ``/proc/self/status`` (Linux). Not ``getrusage``:
its ``ru_maxrss`` survives ``exec``, so a process started by a 3 GB pytest worker reports 3 GB."""

import atexit
import runpy
import sys


def _report() -> None:
    with open("/proc/self/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    sys.stderr.write(f"\npeak_rss_bytes={kb * 1024}\n")


if __name__ == "__main__":
    atexit.register(_report)
    module = sys.argv[1]
    sys.argv = [module, *sys.argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
