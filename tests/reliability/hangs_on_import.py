"""A module that imports in the test process but hangs on import in a spawned child (before fn's first line)."""

import os
import time

if os.environ.get("MCBENCH_TEST_FAULT_ON_IMPORT"):  # set after the test process imported it: the child only
    time.sleep(600)


def work(data: bytes) -> int:
    return len(data)
