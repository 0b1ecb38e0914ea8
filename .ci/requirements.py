"""Print requirements declared in pyproject.toml, one a line, for `pip install`:
`python .ci/requirements.py build test` gives [build-system] requires and the `test` extra.
Used by .ci/sanitize and .ci/mutation, which build in place (and run the tests) without
installing fastloss."""
import sys
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
for group in sys.argv[1:]:
    if group == "build":
        reqs = project["build-system"]["requires"]
    else:
        reqs = project["project"]["optional-dependencies"][group]
    print("\n".join(reqs))
