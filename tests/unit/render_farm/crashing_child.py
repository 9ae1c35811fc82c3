"""A render child that reports progress once and then dies of SIGSEGV, as a native crash."""

from __future__ import annotations

import json
import os
import signal
import sys

if __name__ == "__main__":
    sys.stdin.read()
    print(json.dumps({"progress": ["loading", 10]}), flush=True)
    os.kill(os.getpid(), signal.SIGSEGV)
