"""A tools module whose import never finishes in time: the worker never hands over."""

import sys
import time

print("slow_import: loading a very large model...", file=sys.stderr, flush=True)
time.sleep(60)
