"""The Lambda's own code (``handler/``), as the CLI imports it: the one door to it.

The CLI has no rules of its own: it plans, reads and judges with the modules the Lambda runs.
They live in ``handler/`` at the root of the repository, and at the root of the Lambda
artifact (the template names ``handler.app.lambda_handler``). A wheel ships the same files as
``docker_tls_cli._handler`` instead, so that ``pip install`` puts no top-level ``handler``
package into a user's site-packages; every import inside ``handler/`` is relative, so the
files work under either name.

Which copy (:data:`PACKAGE`):

* an installed wheel has ``_handler/`` beside this module: that one, never a ``handler``
  found elsewhere on ``sys.path`` (another project's package of that name);
* a source checkout (the tests, ``make``, the development virtualenv) uses the checkout's
  ``handler`` package whenever it is importable, so the CLI and the tests share module
  objects (one ``StoreError`` class, one ``ParameterStore`` a test patches); an editable
  install run from elsewhere falls back to ``docker_tls_cli._handler``, which setuptools maps
  to the same files.

Static typing always sees ``handler``. At run time every name in ``__all__`` is taken from
the chosen package's modules, so a name listed here but missing there fails on the first
import, in every test.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

__all__ = [
    "CHECKOUT",
    "PACKAGE",
    "Action",
    "BundleNames",
    "Decision",
    "GeneratorProperties",
    "Item",
    "ItemPlan",
    "KeyAlgorithm",
    "Parameter",
    "ParameterStore",
    "Plan",
    "PrivateKey",
    "PropertyError",
    "Purpose",
    "Resource",
    "RotationStage",
    "StageRefused",
    "StoreError",
    "StoredBundle",
    "StoredKey",
    "Unreadable",
    "certificate_from_stored",
    "certificates_from_stored",
    "ensure",
    "extended_key_usages",
    "fingerprint",
    "parse_generator",
    "plan",
    "private_key_from_stored",
    "public_key_der",
    "same_key",
    "signed_by",
    "subject_alt_names",
]

#: The name of the Lambda's package inside a wheel.
WHEEL_PACKAGE = "docker_tls_cli._handler"
#: The modules the names in ``__all__`` come from (those the CLI uses; not ``app``/``cfn``).
_MODULES = (
    "bundle",
    "certificates",
    "codec",
    "ensure",
    "model",
    "names",
    "ownership",
    "properties",
    "rotation",
    "store",
    "stored",
)


def _checkout() -> Path | None:
    """The source checkout this package runs from, None when installed from a wheel."""
    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file() and (root / "handler" / "__init__.py").is_file():
        return root
    return None


def _package(checkout: Path | None) -> str:
    if (Path(__file__).resolve().parent / "_handler" / "__init__.py").is_file():
        return WHEEL_PACKAGE
    if checkout is not None:
        found = importlib.util.find_spec("handler")
        ours = checkout / "handler" / "__init__.py"
        if found is not None and found.origin and Path(found.origin).resolve() == ours:
            return "handler"
    return WHEEL_PACKAGE


#: The repository the CLI runs from (where ``devkit/`` and ``make`` are), None in a wheel.
CHECKOUT = _checkout()
#: ``handler`` (the checkout's) or :data:`WHEEL_PACKAGE`.
PACKAGE = _package(CHECKOUT)

if TYPE_CHECKING:
    from handler.bundle import Action, Decision, ItemPlan, Plan, plan
    from handler.certificates import (
        KeyAlgorithm,
        Purpose,
        extended_key_usages,
        fingerprint,
        public_key_der,
        same_key,
        signed_by,
        subject_alt_names,
    )
    from handler.codec import (
        PrivateKey,
        Unreadable,
        certificate_from_stored,
        certificates_from_stored,
        private_key_from_stored,
    )
    from handler.ensure import ensure
    from handler.model import GeneratorProperties, RotationStage
    from handler.names import BundleNames, Item
    from handler.ownership import Resource
    from handler.properties import PropertyError, parse_generator
    from handler.rotation import StageRefused
    from handler.store import Parameter, ParameterStore, StoreError
    from handler.stored import StoredBundle, StoredKey
else:

    def _export() -> None:
        modules = [importlib.import_module(f"{PACKAGE}.{name}") for name in _MODULES]
        for name in __all__:
            if name in globals():
                continue
            found = [module for module in modules if hasattr(module, name)]
            if not found:
                raise ImportError(f"{name} is in none of {PACKAGE}'s {', '.join(_MODULES)}")
            globals()[name] = getattr(found[0], name)

    _export()
