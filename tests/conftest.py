"""Root pytest configuration: makes the test harness (`harness`), the repository's Python
tools (`tools`) and the emulator's package (`gcpemu`) importable."""
import os
import sys

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS_DIR)
for d in (os.path.join(REPO, "emulator"), REPO, TESTS_DIR):
    if d not in sys.path:
        sys.path.insert(0, d)
