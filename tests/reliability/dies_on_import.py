"""A module that imports in the test process but raises on import in a spawned child (a broken child path).

The test imports it, then sets MCBENCH_TEST_FAULT_ON_IMPORT: only the child, importing it afresh, sees the variable.
"""

import os

if os.environ.get("MCBENCH_TEST_FAULT_ON_IMPORT"):  # set after the test process imported it: the child only
    raise ImportError("this module cannot be imported in the child")


def work(data: bytes) -> int:
    return len(data)
