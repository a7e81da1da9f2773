"""Package discovery for the `lamflow` namespace (everything else is in pyproject.toml).

The import names are lamflow.workflows (folder workflows/) and lamflow.ops (folder ops/). setuptools'
declarative `find` cannot map a folder to a dotted prefix, so the sub-packages under each folder are
discovered here instead of being listed by hand: a new folder with an __init__.py is packaged as is.
"""

from setuptools import find_packages, setup

PACKAGE_DIRS = {"lamflow.workflows": "workflows", "lamflow.ops": "ops"}


def packages_under(prefix: str, folder: str) -> list[str]:
    return [prefix] + [f"{prefix}.{name}" for name in find_packages(folder)]


setup(packages=[p for prefix, folder in PACKAGE_DIRS.items() for p in packages_under(prefix, folder)])
