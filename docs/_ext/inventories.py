"""Where the intersphinx inventories come from: a local file when a package has put one on this
machine, else the project's published site.

CI has no network, so a build there reads the inventories of Debian's documentation packages
(``.ci/run`` installs them: ``python3-doc``, ``python-tornado-doc``, ``python-flask-doc``,
``python-werkzeug-doc``). The links still point at the published documentation; only the list of
objects that exist comes from the file. A machine without those packages (Read the Docs, a
laptop) fetches the inventories from the sites themselves.

redis-py is not here: no package ships its inventory (see ``nitpick_ignore`` in conf.py).
"""

from __future__ import annotations

import glob
import re

#: ``name: (published documentation, local inventory files to try, newest first)``.
PROJECTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "python": ("https://docs.python.org/3/", ("/usr/share/doc/python3.*/html/objects.inv",)),
    "tornado": ("https://www.tornadoweb.org/en/stable/", ("/usr/share/doc/python-tornado-doc/html/objects.inv",)),
    "flask": ("https://flask.palletsprojects.com/en/stable/", ("/usr/share/doc/python-flask-doc/html/objects.inv",)),
    "werkzeug": ("https://werkzeug.palletsprojects.com/en/stable/", ("/usr/share/doc/python-werkzeug-doc/html/objects.inv",)),
}

#: The Debian packages that hold the files above, for the error message and .ci/run.
DEBIAN_PACKAGES = ("python3-doc", "python-tornado-doc", "python-flask-doc", "python-werkzeug-doc")


def local_inventory(patterns: tuple[str, ...]) -> str | None:
    """The newest local inventory matching ``patterns`` (``python3.13`` sorts after ``python3.11``)."""
    for pattern in patterns:
        found = sorted(glob.glob(pattern), key=lambda path: [int(number) for number in re.findall(r"\d+", path)])
        if found:
            return found[-1]
    return None


def mapping() -> dict[str, tuple[str, str | None]]:
    """``intersphinx_mapping``: each project's site, with its local inventory when there is one."""
    return {name: (site, local_inventory(patterns)) for name, (site, patterns) in PROJECTS.items()}
