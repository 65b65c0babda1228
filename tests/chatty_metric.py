"""A user metric that talks the way third-party libraries do: logging, warnings, print, and C-level stderr."""

import logging
import os
import warnings


def chatty(outputs, labels):
    logging.warning("marker-from-logging")
    warnings.warn("marker-from-warnings", stacklevel=1)
    print("marker-from-print")
    os.write(2, b"marker-from-fd2\n")
    return 1.0
