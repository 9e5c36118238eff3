"""Package discovery (metadata is in pyproject.toml).

The design card keeps `callbacks/` and `converters/` at the top of the repository; they install
as `tfdynhp.callbacks` and `tfdynhp.converters`. Every package under the three folders is found
by `find_packages`, so a new subpackage cannot be left out of the wheel.
"""

from setuptools import find_packages, setup

MAPPED = {"callbacks": "tfdynhp.callbacks", "converters": "tfdynhp.converters"}

packages = find_packages(include=["tfdynhp", "tfdynhp.*"])
package_dir = {"tfdynhp": "tfdynhp"}
for folder, name in MAPPED.items():
    package_dir[name] = folder
    for found in find_packages(include=[folder, f"{folder}.*"]):
        packages.append(name + found[len(folder):])

setup(packages=packages, package_dir=package_dir)
