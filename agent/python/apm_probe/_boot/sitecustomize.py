"""Loaded by Python at start-up because apm-run put this directory first on PYTHONPATH.

It runs the sitecustomize this one shadows (the distribution's or a virtualenv's), then
starts the probe. An error in the shadowed module is re-raised after the probe has
started, so Python reports it exactly as it would have without us.
"""

import importlib.machinery
import importlib.util
import os
import sys


def _chain() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    path = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", path)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules["sitecustomize"] = module
    spec.loader.exec_module(module)


def _import_from_here() -> None:
    # apm-run leaves a site-packages directory off PYTHONPATH (launcher.py): an interpreter
    # other than the one apm_probe was installed for loads the package from beside us
    # alone, not everything else that directory holds.
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location(
        "apm_probe", os.path.join(package, "__init__.py"), submodule_search_locations=[package])
    if spec is None or spec.loader is None:
        raise ImportError(f"no apm_probe in {package}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["apm_probe"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules["apm_probe"]
        raise


def _main() -> None:
    try:
        _chain()
    finally:
        try:
            try:
                from apm_probe import _autostart
            except ModuleNotFoundError as exc:
                if exc.name != "apm_probe":
                    raise
                _import_from_here()
                from apm_probe import _autostart
        except Exception as exc:
            sys.stderr.write(f"apm_probe: not started: {type(exc).__name__}: {exc}\n")
        else:
            _autostart.run()


_main()
