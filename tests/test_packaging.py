"""What ``pip install presence`` installs: every package of presence/ is
listed in pyproject.toml (a flat layout names its packages one by one, and
the tests' editable install would not notice one missing: its .pth file
puts the whole repository on sys.path)."""

import os
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_package_of_presence_is_installed():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        listed = set(tomllib.load(f)["tool"]["setuptools"]["packages"])
    found = set()
    for folder, _, files in os.walk(os.path.join(ROOT, "presence")):
        if "__init__.py" in files:
            found.add(os.path.relpath(folder, ROOT).replace(os.sep, "."))
    assert found - listed == set(), "packages pyproject.toml does not install"
