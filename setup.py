"""Build hook (everything else is in pyproject.toml): the catalogues and Hydra configs in the
top-level ``conf/`` directory ship inside the wheel as the package data ``moejax/conf``.

``conf/`` stays at the repository root (the project's layout); ``package_dir`` maps the package
name ``moejax.conf`` onto it at build time, and ``[tool.setuptools.package-data]`` lists its YAML
files. pyproject.toml alone cannot express this: its ``packages.find`` discovers only directories
under their own names. ``moejax.catalogue.CONF_DIR`` is ``moejax/conf`` in an installed wheel and
``conf/`` in a clone or an editable install."""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["moejax*"]), "moejax.conf"], package_dir={"moejax.conf": "conf"})
