"""Sphinx configuration for avatar_nb's documentation site (``make docs``).

The guides are the README's sections (included, so each fact keeps one home), the API
reference is autodoc over the public names, and the example notebooks are executed by
myst-nb at build time, so the pages show their real outputs. The build runs offline and
``make docs`` treats every warning as an error.
"""

from __future__ import annotations

import os

import avatar_nb

project = "avatar_nb"
author = "avatar_nb developers"
copyright = "avatar_nb developers"
release = version = avatar_nb.__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "sphinx_copybutton",
]

root_doc = "index"
exclude_patterns = ["_build", "notebooks/.ipynb_checkpoints", "**/.ipynb_checkpoints"]
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}

# MyST: the README's sections are included under page titles of their own, so their
# ### headings sit one level deeper than Sphinx would like
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
suppress_warnings = ["myst.header"]

# notebooks run against the embedded local service at build time, in a temporary folder
# (they write results and audio into their working folder), with the Agg backend
nb_execution_mode = os.environ.get("AVATAR_NB_DOCS_EXECUTE", "force")
nb_execution_in_temp = True
nb_execution_timeout = 900
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True
os.environ.setdefault("MPLBACKEND", "agg")

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = False
napoleon_numpy_docstring = True

html_theme = "pydata_sphinx_theme"
html_title = "avatar_nb"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "footer_start": ["copyright"],
    "footer_end": [],
}
html_static_path: list[str] = []
