"""Resolve a reference that names an object as the module it appears in sees it.

A docstring says :class:`SessionSettings` or :class:`redis_session.SessionAdmin`, as the code
does; Sphinx knows the objects by where they are defined (``redis_session.settings.
SessionSettings``, ``redis_session.admin.SessionAdmin``). When Sphinx finds no target, this
looks the name up in the referencing module's namespace (or imports the dotted path), and tries
again under the object's defining module: first among the documented objects, then in the other
projects' inventories (a type annotation's ``_asyncio.Future`` is ``asyncio.Future``).
Whatever still resolves to nothing stays a warning.
"""

from __future__ import annotations

import importlib
from typing import Any

from docutils import nodes
from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.ext import intersphinx


def lookup(dotted: str, context: str | None) -> Any:
    """The object ``dotted`` names, seen from module ``context``, or ``None``."""
    attempts = [(context, dotted)] if context else []
    parts = dotted.split(".")
    attempts += [(".".join(parts[:cut]), ".".join(parts[cut:])) for cut in range(len(parts) - 1, 0, -1)]
    for module_name, path in attempts:
        try:
            found: Any = importlib.import_module(module_name)
        except ImportError:
            continue
        try:
            for part in path.split("."):
                found = getattr(found, part)
        except AttributeError:
            continue
        return found
    return None


def defining_names(obj: Any) -> list[str]:
    try:  # a proxy such as flask.session raises on any attribute outside a request
        module = getattr(obj, "__module__", None)
        qualname = getattr(obj, "__qualname__", None)
    except Exception:  # noqa: BLE001 - whatever it raises, it names nothing here
        return []
    if not isinstance(module, str) or not isinstance(qualname, str):
        return []
    return [f"{module}.{qualname}", f"{module.lstrip('_')}.{qualname}"]


def resolve(app: Sphinx, env: BuildEnvironment, node: pending_xref, contnode: nodes.TextElement) -> nodes.Node | None:
    if node.get("refdomain") != "py" or node.get("module_names_retry"):
        return None
    target = node["reftarget"].lstrip(".~")
    domain = env.get_domain("py")
    obj = lookup(target, node.get("py:module"))
    names = defining_names(obj) if obj is not None else []
    # a docstring may name a class its module does not import: the one documented object so named
    if not names:
        named = [name for name in domain.objects if name.endswith("." + target)]
        names = named if len(named) == 1 else []
    for name in names:
        if name == target:
            continue
        retry = node.deepcopy()
        retry["reftarget"] = name
        retry["module_names_retry"] = True
        found = domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], name, retry, contnode)
        if found is None:
            found = domain.resolve_any_xref(env, node["refdoc"], app.builder, name, retry, contnode)
            found = found[0][1] if found else None
        if found is None:
            found = intersphinx.missing_reference(app, env, retry, contnode)
        if found is not None:
            return found
    return None


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("missing-reference", resolve, priority=900)  # after intersphinx (500) had its say
    return {"parallel_read_safe": True, "parallel_write_safe": True}
