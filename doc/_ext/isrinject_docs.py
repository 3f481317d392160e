"""Sphinx extension of the isrinject documentation.

- Cross-references are resolved the way the docstrings are written: a name
  that is in scope in the module whose docstring uses it (``standardize_columns``
  in `isrinject.engine.catalog.validate`, ``upstream.upstream_injection`` in
  `isrinject.diagnostics.diagnose`) or that a package re-exports
  (``isrinject.engine.catalog.compose_catalog``) links to where the object is
  documented.  A name in scope that is defined outside isrinject (lsst.images,
  pipe_base, astropy, builtins), or a PEP 695 type alias, is accepted as plain
  code: the other projects' inventories are not fetched (the build is
  offline).  Anything else stays a nitpicky warning, an isrinject constant
  that is not documented included.
- ``.. isrinject-connections:: module.ConnectionsClass`` renders a task's
  butler connections (dataset type, storage class, dimensions, doc) from the
  class itself; on the class's API page each connection attribute shows its
  own ``doc`` instead of pipe_base's class docstring.
- ``.. isrinject-source-types::`` prints the catalog's source types as
  ``isrinject show-source-types`` does.
- ``.. isrinject-verdict::`` states the one PASS rule from its code.
- ``.. isrinject-reexports::`` lists a package's re-exported names, linked.
- Every public module gets its own API page (``isrinject/_generated/api/``),
  listed by the layer pages ``isrinject/api-*.rst``.
- `command_parser` hands sphinx-argparse the command's parser with ``--help``
  layouts kept.
- ``.. isrinject-config-fields::`` and ``.. isrinject-flags::`` render a config
  class's fields and the ``injection_flag`` bits from the code.
- The tutorial notebook (``doc/isrinject/tutorial.ipynb``, kept out of the
  source scan) is copied into ``isrinject/_generated/`` before reading, so myst-nb executes and renders it (on the demo
  repository of ``$ISRINJECT_DEMO_REPO``, built here when unset); without the
  notebook a page says so.
"""

from __future__ import annotations

import argparse
import ast
import builtins
import functools
import importlib
import importlib.util
import inspect
import json
import os
import shutil
import subprocess
import sys
import types
import typing
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.parsers.rst import Directive
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.pycode import ModuleAnalyzer
from sphinx.util import logging

PACKAGE = "isrinject"
logger = logging.getLogger(__name__)


# --- cross-references ---------------------------------------------------------------------------


def _docstring_owner(node: nodes.Element) -> str | None:
    """The dotted name of the object whose docstring holds ``node`` (autodoc
    records it in the source as ``<file>:docstring of <name>``)."""
    element: nodes.Node | None = node
    while element is not None:
        source = getattr(element, "source", None)
        if source and ":docstring of " in source:
            return source.rsplit(":docstring of ", 1)[1]
        element = element.parent
    return None


def _import_longest(parts: list[str]) -> tuple[Any, list[str]] | None:
    """Import the longest module prefix of ``parts``; ``(module, remaining parts)``."""
    for cut in range(len(parts), 0, -1):
        try:
            return importlib.import_module(".".join(parts[:cut])), parts[cut:]
        except ImportError:
            continue
    return None


def _object_at(name: str) -> Any:
    """The object a dotted name leads to, or `None`."""
    found = _import_longest(name.split("."))
    if found is None:
        return None
    obj, rest = found
    for part in rest:
        obj = getattr(obj, part, None)
    return obj


def _scopes(node: nodes.Element) -> list[Any]:
    """Namespaces a name in this reference's docstring or signature is looked up in, in order."""
    owners: list[Any] = []
    docstring_owner = _docstring_owner(node)
    if docstring_owner is not None:
        owners.append(_object_at(docstring_owner))
    # A signature's annotation: the object the signature describes.
    signature = node.parent
    while signature is not None and not isinstance(signature, addnodes.desc_signature):
        signature = signature.parent
    if signature is not None and signature.get("module") and signature.get("fullname"):
        owners.append(_object_at(f"{signature['module']}.{signature['fullname']}"))
    module = sys.modules.get(node.get("py:module") or "")
    if module is not None and isinstance(node.get("py:class"), str):
        owners.append(_object_at(f"{module.__name__}.{node['py:class']}"))
    scopes: list[Any] = []
    for owner in owners:
        if owner is None:
            continue
        # The module that defines the object (``isrinject.sim.isr`` for
        # ``isrinject.sim.simulate_exposure``) holds the names it uses; a
        # signature inherited from a base class (pipe_base's PipelineTask)
        # names what the base's module imports.
        classes = owner.__mro__ if isinstance(owner, type) else ()
        scopes.extend(classes)
        for defined in classes or (owner,):
            if getattr(defined, "__module__", None) in sys.modules:
                scopes.append(sys.modules[defined.__module__])
    if module is not None:
        scopes.append(module)
        # Sibling modules (``upstream.upstream_injection`` in isrinject.diagnostics.diagnose).
        package = module.__name__.rpartition(".")[0]
        while package:
            scopes.append(sys.modules[package])
            package = package.rpartition(".")[0]
    return scopes


@functools.cache
def _type_checking_imports(module_name: str) -> dict[str, str]:
    """``{name: "module.attribute"}`` of the ``if TYPE_CHECKING:`` imports of a module
    (names its annotations use that are not bound at run time)."""
    module = sys.modules.get(module_name)
    try:
        tree = ast.parse(inspect.getsource(module)) if module is not None else None
    except (OSError, TypeError):
        tree = None
    imports: dict[str, str] = {}
    for statement in tree.body if tree is not None else []:
        test = statement.test if isinstance(statement, ast.If) else None
        if not (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") and not (
            isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
        ):
            continue
        for child in statement.body:
            if isinstance(child, ast.ImportFrom):
                base = importlib.util.resolve_name("." * child.level + (child.module or ""), module.__package__)
                for alias in child.names:
                    imports[alias.asname or alias.name] = f"{base}.{alias.name}"
    return imports


def _lookup(node: nodes.Element, target: str) -> tuple[bool, Any, str]:
    """Evaluate ``target`` as the docstring's module would.

    Returns ``(found, object, holder)``, ``holder`` being the name of the
    module (or class) the object was an attribute of, which says whose a
    constant is (a string or a tuple has no ``__module__`` of its own).
    """
    first, *rest = target.split(".")
    for scope in _scopes(node):
        if hasattr(scope, first):
            obj, holder = getattr(scope, first), scope
            break
        deferred = _type_checking_imports(scope.__name__) if isinstance(scope, types.ModuleType) else {}
        if first in deferred:
            module_name, _, attribute = deferred[first].rpartition(".")
            try:
                holder = importlib.import_module(module_name)
                obj = getattr(holder, attribute)
                break
            except (ImportError, AttributeError):
                pass
        if isinstance(scope, types.ModuleType) and hasattr(scope, "__path__"):
            try:
                obj = holder = importlib.import_module(f"{scope.__name__}.{first}")
                break
            except ImportError:
                pass
    else:
        # A dotted path from the top: ``isrinject.engine.draw.local_jacobians``, ``lsst.images.VisitImage``.
        found = _import_longest(target.split("."))
        if found is None:
            if hasattr(builtins, target):
                return True, getattr(builtins, target), "builtins"
            return False, None, ""
        obj, rest = found
        holder = obj
    for part in rest:
        if not hasattr(obj, part):
            return False, None, ""
        holder, obj = obj, getattr(obj, part)
    holder_name = holder.__name__ if isinstance(holder, types.ModuleType) else getattr(holder, "__module__", "")
    return True, obj, holder_name if isinstance(holder_name, str) else ""


def _documented_name(obj: Any, name: str, documented: dict[str, Any]) -> str | None:
    """The name under which ``obj`` is documented, if it is."""
    if isinstance(obj, types.ModuleType):
        return obj.__name__ if obj.__name__ in documented else None
    if _has_own_name(obj):
        full = f"{obj.__module__}.{obj.__qualname__}"
        return full if full in documented else None
    # Data (constants): the module attribute that holds this very object.
    last = name.rsplit(".", 1)[-1]
    for candidate in documented:
        if candidate.rsplit(".", 1)[-1] != last:
            continue
        module_name = candidate.rsplit(".", 1)[0]
        if getattr(sys.modules.get(module_name), last, None) is obj:
            return candidate
    return None


def _has_own_name(obj: Any) -> bool:
    """Classes and functions know where they are defined; constants do not."""
    return isinstance(getattr(obj, "__module__", None), str) and isinstance(getattr(obj, "__qualname__", None), str)


def _is_external(obj: Any, holder: str) -> bool:
    if isinstance(obj, types.ModuleType):
        root = obj.__name__
    elif _has_own_name(obj):
        root = obj.__module__
    else:
        # A constant belongs to the module that holds it.
        root = holder
    return root.split(".")[0] != PACKAGE


def _resolve_in_scope(
    app: Sphinx, env: BuildEnvironment, node: nodes.Element, contnode: nodes.Element
) -> nodes.Element | None:
    if node.get("refdomain") != "py":
        return None
    # ``Mapping[str`` comes from a signature Sphinx could not parse (a dataclass
    # field's ``=<factory>`` default): the reference is to the generic itself.
    target = node["reftarget"].lstrip("~.").split("[", 1)[0]
    found, obj, holder = _lookup(node, target)
    if not found:
        return None
    if isinstance(obj, typing.TypeAliasType):
        # The modules' PEP 695 array aliases (``type FloatArray = ...``): autodoc
        # shows them in signatures but cannot document them.
        return contnode
    domain = env.get_domain("py")
    documented = domain.objects  # type: ignore[attr-defined]
    documented_name = _documented_name(obj, target, documented)
    if documented_name is not None:
        resolved = node.deepcopy()
        resolved["reftarget"] = documented_name
        return domain.resolve_xref(env, node["refdoc"], app.builder, "obj", documented_name, resolved, contnode)
    if _is_external(obj, holder):
        return contnode
    return None


# --- butler connections -------------------------------------------------------------------------


def _connection_fields(cls: type) -> list[tuple[str, Any]]:
    from lsst.pipe.base.connectionTypes import BaseConnection

    return [(name, value) for name, value in vars(cls).items() if isinstance(value, BaseConnection)]


class ConnectionsDirective(Directive):
    """``.. isrinject-connections:: isrinject.tasks.visit.VisitInjectConnections``: a table of connections."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        module_name, class_name = self.arguments[0].rsplit(".", 1)
        cls = getattr(importlib.import_module(module_name), class_name)
        defaults = getattr(cls, "defaultTemplates", {})
        rows = []
        for name, connection in _connection_fields(cls):
            dataset_type = connection.name
            for key, value in defaults.items():
                dataset_type = dataset_type.replace("{" + key + "}", value)
            kind = type(connection).__name__
            if getattr(connection, "isCalibration", False):
                kind += " (calibration)"
            # Four columns, two of them holding two lines, so that the table fits the
            # article's width (six columns of long identifiers did not).
            rows.append(
                [
                    [nodes.literal(text=name), kind],
                    [nodes.literal(text=dataset_type), nodes.literal(text=connection.storageClass)],
                    ", ".join(connection.dimensions),
                    connection.doc,
                ]
            )
        return [_table(self, ["connection / kind", "dataset type / storage class", "dimensions", "doc"], rows)]


def _table(directive: Directive, header: list[Any], rows: list[list[Any]]) -> nodes.table:
    """A table node; string cells are parsed as inline reST (the docs hold ``literals``), a
    list cell is one line per item."""
    table = nodes.table()
    group = nodes.tgroup(cols=len(header))
    table += group
    for _ in header:
        group += nodes.colspec(colwidth=1)
    head, body = nodes.thead(), nodes.tbody()
    group += head
    group += body
    for cells, section in ([header], head), (rows, body):
        for row_cells in cells:
            row = nodes.row()
            for cell in row_cells:
                entry = nodes.entry()
                for line in cell if isinstance(cell, list) else [cell]:
                    paragraph = nodes.paragraph()
                    if isinstance(line, nodes.Node):
                        paragraph += line
                    else:
                        parsed, messages = directive.state.inline_text(str(line), directive.lineno)
                        paragraph.extend(parsed)
                        paragraph.extend(messages)
                    entry += paragraph
                row += entry
            section += row
    return table


def _connection_docstrings(
    app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    """Document a connection attribute by its own ``doc`` and dataset type, not by pipe_base's
    class docstring (which would be repeated on every connection and cross-reference pipe_base)."""
    from lsst.pipe.base.connectionTypes import BaseConnection

    if isinstance(obj, BaseConnection):
        kind = type(obj).__name__
        lines[:] = [
            f"{obj.doc}",
            "",
            f"{kind}: dataset type ``{obj.name}``, storage class ``{obj.storageClass}``, "
            f"dimensions ``{', '.join(obj.dimensions) or '()'}``.",
        ]
    elif what == "attribute" and name.rsplit(".", 1)[-1] in _CONNECTIONS_BOOKKEEPING and isinstance(
        obj, (set, frozenset, dict)
    ):
        lines[:] = ["Set by pipe_base's connections metaclass from the connection attributes."]


#: Class attributes pipe_base's connections metaclass adds to every connections class.
_CONNECTIONS_BOOKKEEPING = frozenset(
    {
        "allConnections", "initInputs", "initOutputs", "inputs", "outputs", "prerequisiteInputs",
        "defaultTemplates", "deprecatedTemplates", "dimensions",
    }
)


# --- the catalog's source types ----------------------------------------------------------------


class SourceTypesDirective(Directive):
    """``.. isrinject-source-types::``: what ``isrinject show-source-types`` prints, from the
    table catalog validation checks rows against."""

    def run(self) -> list[nodes.Node]:
        from isrinject.engine.catalog.source_types import SOURCE_TYPE_PARAMETERS, describe_common_columns

        text = "\n".join([describe_common_columns(100), *(p.describe(100) for p in SOURCE_TYPE_PARAMETERS.values())])
        return [nodes.literal_block(text, text)]


# --- the verdict -------------------------------------------------------------------------------


class VerdictDirective(Directive):
    """``.. isrinject-verdict::``: the PASS rule as `isrinject.diagnostics.verdict.criteria_text`
    states it (the same words ``isrinject diagnose --help`` prints)."""

    def run(self) -> list[nodes.Node]:
        from isrinject.diagnostics.verdict import criteria_text

        text = criteria_text()
        return [nodes.block_quote("", nodes.paragraph(text, text))]


# --- a package's re-exports --------------------------------------------------------------------


class ReexportsDirective(Directive):
    """``.. isrinject-reexports:: isrinject``: the names of a package's ``__all__``, each linked
    to where its defining module documents it."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        package = importlib.import_module(self.arguments[0])
        names = getattr(package, "__all__", [])
        if not names:
            return []
        items = nodes.bullet_list()
        for name in names:
            # The reference resolver (above) links the re-exported name to its defining module.
            parsed, messages = self.state.inline_text(f"`{package.__name__}.{name}`", self.lineno)
            item = nodes.list_item()
            item += nodes.paragraph("", "", *parsed, *messages)
            items += item
        return [items]


# --- the API reference: one page per module -----------------------------------------------------


def public_modules() -> list[str]:
    """The isrinject modules and packages the API reference documents: every one with an
    ``__all__``, except private ones (``_sky``, ``__main__``) and the sub-commands' own
    ``cli`` modules (the command reference documents those)."""
    import pkgutil

    import isrinject

    names = [PACKAGE]
    for info in pkgutil.walk_packages(isrinject.__path__, f"{PACKAGE}."):
        last = info.name.rsplit(".", 1)[-1]
        if last.startswith("_") or (last == "cli" and info.name != f"{PACKAGE}.cli"):
            continue
        names.append(info.name)
    return [name for name in names if getattr(importlib.import_module(name), "__all__", None)]


def _module_page(name: str) -> str:
    """The reST of one module's API page: automodapi of its ``__all__``, or, for a package
    that only re-exports its modules' names, its docstring and the re-exported names."""
    module = importlib.import_module(name)
    title = f"{name}\n{'=' * len(name)}\n\n"
    reexports_only = hasattr(module, "__path__") and not any(
        getattr(getattr(module, each), "__module__", None) == name for each in module.__all__
    )
    if reexports_only:
        return (title + f".. automodule:: {name}\n   :no-members:\n\n"
                "These names are imported from the modules that define them:\n\n"
                f".. isrinject-reexports:: {name}\n")
    return title + f".. automodapi:: {name}\n   :include-all-objects:\n   :no-heading:\n   :headings: -^\n"


def _write_module_pages(app: Sphinx, config: Any) -> None:
    """Write ``isrinject/_generated/api/<module>.rst`` for every public module (before the
    sources are discovered, so automodapi generates their objects' pages).  The layer pages
    (``isrinject/api-*.rst``) list them in their toctrees: a module no toctree lists is a
    "document isn't included in any toctree" warning, which fails the build."""
    if not (Path(app.srcdir) / "isrinject" / "api.rst").is_file():
        return  # a site without the API reference (tests/test_docs.py's small sites)
    directory = Path(app.srcdir) / "isrinject" / "_generated" / "api"
    directory.mkdir(parents=True, exist_ok=True)
    wanted = {f"{name}.rst": _module_page(name) for name in public_modules()}
    for stale in directory.glob("*.rst"):
        if stale.name not in wanted:
            stale.unlink()
    for filename, text in wanted.items():
        page = directory / filename
        # Rewritten only when changed, so an incremental build does not reread every page.
        if not page.is_file() or page.read_text() != text:
            page.write_text(text)


# --- the command reference ----------------------------------------------------------------------


def command_parser() -> argparse.ArgumentParser:
    """`isrinject.cli.build_parser` for sphinx-argparse (``doc/isrinject/scripts/isrinject.rst``).

    sphinx-argparse reads descriptions as reST; a sub-command whose
    description is laid out for ``--help`` (``RawDescriptionHelpFormatter``)
    gets its indented paragraphs as literal blocks, so they look as ``--help``
    prints them.
    """
    from isrinject.cli import build_parser

    parser = build_parser()
    parsers = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            parsers.extend(action.choices.values())
    for each in parsers:
        if issubclass(each.formatter_class, argparse.RawDescriptionHelpFormatter) and each.description:
            paragraphs = each.description.strip("\n").split("\n\n")
            each.description = "\n\n".join(
                f"::\n\n{paragraph}" if all(line[:1].isspace() for line in paragraph.splitlines()) else paragraph
                for paragraph in paragraphs
            )
    return parser


# --- config fields and flag bits ------------------------------------------------------------------


class ConfigFieldsDirective(Directive):
    """``.. isrinject-config-fields:: isrinject.tasks.visit.VisitInjectConfig``: a table of the
    config fields (name, type, default, doc; allowed values of choice fields)."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        from lsst.pex.config import ChoiceField, ConfigurableField, ListField

        module_name, class_name = self.arguments[0].rsplit(".", 1)
        cls = getattr(importlib.import_module(module_name), class_name)
        rows = []
        for name, field in cls._fields.items():
            if name in _PIPE_BASE_CONFIG_FIELDS or isinstance(field, ConfigurableField):
                continue
            if isinstance(field, ListField):
                type_name = f"list[{field.itemtype.__name__}]"
            else:
                type_name = getattr(field.dtype, "__name__", str(field.dtype))
            doc = field.doc
            if isinstance(field, ChoiceField):
                # (pex_config lists None, "Field is optional", for every optional choice field.)
                doc += " Allowed: " + "; ".join(
                    f"{key!r}: {text}" for key, text in field.allowed.items() if key is not None
                )
            rows.append([nodes.literal(text=name), type_name, nodes.literal(text=repr(field.default)), doc])
        return [_table(self, ["field", "type", "default", "meaning"], rows)]


#: Fields every PipelineTaskConfig has (pipe_base's, not this task's).
_PIPE_BASE_CONFIG_FIELDS = frozenset({"connections", "saveLogOutput", "saveMetadata"})


class FlagsDirective(Directive):
    """``.. isrinject-flags::``: the ``injection_flag`` bits of `isrinject.engine.flags.InjectionFlag`."""

    def run(self) -> list[nodes.Node]:
        from isrinject.engine.flags import FATAL_FLAGS, InjectionFlag

        # The members' docstrings are attribute docstrings: read from the source, as autodoc does.
        docs = ModuleAnalyzer.for_module(InjectionFlag.__module__).find_attr_docs()
        rows = [
            [
                str(flag.value.bit_length() - 1),
                nodes.literal(text=flag.name),
                "not injected" if flag & FATAL_FLAGS else "injected, with a caveat",
                " ".join(docs[(InjectionFlag.__name__, flag.name)]).strip(),
            ]
            for flag in InjectionFlag
        ]
        return [_table(self, ["bit", "flag", "the source is", "meaning"], rows)]


# --- the tutorial notebook ----------------------------------------------------------------------


def _place_tutorial(app: Sphinx) -> None:
    """Copy the notebook into the source tree, or write the page that says it is absent."""
    source = (Path(app.confdir) / app.config.isrinject_tutorial).resolve()
    generated = Path(app.srcdir) / "isrinject" / "_generated"
    generated.mkdir(parents=True, exist_ok=True)
    notebook, placeholder = generated / "tutorial.ipynb", generated / "tutorial.rst"
    if source.is_file():
        placeholder.unlink(missing_ok=True)
        if not notebook.is_file() or notebook.read_bytes() != source.read_bytes():
            shutil.copyfile(source, notebook)
        if not _has_outputs(notebook):
            _provide_demo_repo(app)
        return
    notebook.unlink(missing_ok=True)
    root = Path(app.confdir).parent
    shown = source.relative_to(root) if source.is_relative_to(root) else source
    text = (
        "Tutorial notebook\n=================\n\n"
        f"The tutorial notebook ``{shown}`` is not part of this checkout, so there is\n"
        "nothing to render yet.  When it is present the documentation build executes it\n"
        "and shows it here with its outputs.\n"
    )
    if not placeholder.is_file() or placeholder.read_text() != text:
        placeholder.write_text(text)


def _has_outputs(path: Path) -> bool:
    """Whether a notebook was saved executed (myst-nb then renders it without running it)."""
    cells = json.loads(path.read_text()).get("cells", [])
    return any(cell.get("outputs") for cell in cells if cell.get("cell_type") == "code")


def _provide_demo_repo(app: Sphinx) -> None:
    """The tutorial reads the demo repository named by ``$ISRINJECT_DEMO_REPO``; without one,
    build it once (``isrinject demo --repo``) in the doctree cache and point the kernel at it."""
    if os.environ.get("ISRINJECT_DEMO_REPO"):
        return
    repo = Path(app.doctreedir) / "tutorial_demo_repo"
    if not (repo / "demo.json").is_file():
        logger.info("Building the tutorial's demo repository in %s (isrinject demo) ...", repo)
        command = [sys.executable, "-m", "isrinject.cli", "demo", "--repo", str(repo),
                   "--output", str(Path(app.doctreedir) / "tutorial_demo_output"), *app.config.isrinject_tutorial_demo]
        result = subprocess.run(command, capture_output=True, text=True, env=_with_package_path())
        if not (repo / "demo.json").is_file():
            logger.warning(
                "isrinject demo did not build the tutorial's repository (exit code %d): %s",
                result.returncode, (result.stdout + result.stderr)[-3000:],
            )
            return
    # The notebook kernel inherits this process's environment.
    os.environ["ISRINJECT_DEMO_REPO"] = str(repo)


def _with_package_path() -> dict[str, str]:
    """The environment, with the documented checkout's python/ first on PYTHONPATH."""
    env = dict(os.environ)
    package = str(Path(__file__).resolve().parents[2] / "python")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package, env.get("PYTHONPATH")]))
    return env


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the config values, event handlers and directives above."""
    app.add_config_value("isrinject_tutorial", "isrinject/tutorial.ipynb", "env")
    # `isrinject demo` options of the repository the tutorial runs on (as tests/test_tutorial.py).
    app.add_config_value("isrinject_tutorial_demo", ["--bands", "u", "--detectors", "0", "--size", "256",
                                                     "--n-sources", "20", "--n-real-stars", "0", "--no-discriminate"],
                         "env")
    app.connect("config-inited", _write_module_pages)
    app.connect("builder-inited", _place_tutorial)
    app.connect("missing-reference", _resolve_in_scope)
    app.connect("autodoc-process-docstring", _connection_docstrings)
    app.add_directive("isrinject-connections", ConnectionsDirective)
    app.add_directive("isrinject-config-fields", ConfigFieldsDirective)
    app.add_directive("isrinject-flags", FlagsDirective)
    app.add_directive("isrinject-reexports", ReexportsDirective)
    app.add_directive("isrinject-source-types", SourceTypesDirective)
    app.add_directive("isrinject-verdict", VerdictDirective)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


__all__ = ["setup"]
