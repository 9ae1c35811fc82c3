"""A render child that reports progress once and then never finishes."""

from __future__ import annotations

import json
import sys
import time

if __name__ == "__main__":
    sys.stdin.read()
    print(json.dumps({"progress": ["loading", 10]}), flush=True)
    time.sleep(3600)
