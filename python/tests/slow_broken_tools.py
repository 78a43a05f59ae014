"""A tools module whose import fails after a moment: the host is waiting in Describe."""

import time

time.sleep(0.5)
raise RuntimeError("broken on purpose, slowly")
