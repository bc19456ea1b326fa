"""The main of every Bazel py_test: runs pytest on the test files given as arguments.

Bazel runs a py_test's main as a script from the runfiles tree, where tests/BUILD also
puts pytest.ini and tests/conftest.py, so pytest sees the same configuration as
`python3 -m pytest` from the repository root. The JUnit XML goes where Bazel asks
(`XML_OUTPUT_FILE`), so its test report lists each test function.
"""

import os
import sys

import pytest


def main(argv: list[str]) -> int:
    """Runs pytest on `argv` (test files and options); returns its exit code."""
    # The runfiles tree is Bazel's, not a place for pytest's cache.
    args = ["-p", "no:cacheprovider", *argv]
    if "XML_OUTPUT_FILE" in os.environ:
        args.append(f"--junitxml={os.environ['XML_OUTPUT_FILE']}")
    return int(pytest.main(args))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
