"""``python tests/peak_rss.py MODULE ARGS...`` runs ``python -m MODULE ARGS`` in this process and, on
exit (success, refusal or crash), prints ``peak_rss_bytes=N`` as the last line of stderr: the
process's peak resident set size (``getrusage``; Linux reports kB)."""

import atexit
import resource
import runpy
import sys


def _report() -> None:
    sys.stderr.write(f"\npeak_rss_bytes={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}\n")


if __name__ == "__main__":
    atexit.register(_report)
    module = sys.argv[1]
    sys.argv = [module, *sys.argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
