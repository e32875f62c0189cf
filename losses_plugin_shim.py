"""Start-up hook (``losses_plugin_shim.pth``): what BasicSR needs from losses_plugin before anyone imports it.

The ``.pth`` file runs :func:`install` in every Python process of the environment, so this module imports
nothing at start-up (not even ``importlib``), answers only when BasicSR asks, and never raises there: where
anything fails, BasicSR is left as it is and the process goes on. Its two parts:

- **torchvision**: torchvision 0.17 removed ``torchvision.transforms.functional_tensor``, which
  ``import basicsr`` (1.4.2) needs for ``rgb_to_grayscale``. :class:`FunctionalTensorFinder` provides it, only
  when no real module of that name exists.
- **Registry names** (off with ``LOSSES_PLUGIN_NO_REGISTRY_HOOK=1``): once ``basicsr.utils.registry`` has
  run, :func:`teach` wraps its ``Registry.get`` and ``in``. The first lookup of one of :data:`OUR_NAMES` that
  is not registered yet imports ``losses_plugin``, which registers it, and answers it; so a project's
  unmodified ``train.py``, BasicSR's ``basicsr.train`` and ``basicsr.test`` build our losses, networks,
  models, datasets and metrics from their option files alone. A name nobody registers still raises
  ``KeyError``, with the registry, the name and the close matches among every name registered and ours
  (a miss never imports ``losses_plugin``: the table is enough). BasicSR's names and a project's own are
  looked up as before; listing a registry (``keys()``, iteration) shows only what has been imported.

It is installed again by ``losses_plugin.compat`` on ``import losses_plugin``, for environments without the
``.pth`` (the package on ``PYTHONPATH``).
"""
import os
import sys

FUNCTIONAL_TENSOR = 'torchvision.transforms.functional_tensor'
REGISTRY_MODULE = 'basicsr.utils.registry'
NO_REGISTRY_HOOK = 'LOSSES_PLUGIN_NO_REGISTRY_HOOK'

# What `import losses_plugin` registers, per BasicSR registry (Registry._name), known without importing it;
# tests/test_startup_hook.py checks it against the registries after import, so it cannot drift.
OUR_NAMES = {
    'arch': frozenset({'ClassModule', 'DnCNN', 'FGDNet', 'GRUNet', 'HAT', 'LapSRN', 'MPRNet', 'NLSN', 'SRCNN',
                       'TLWWeightingNet', 'UncertaintySRNet', 'VDSR', 'ZhaoDemosaickNet'}),
    'dataset': frozenset({'SyntheticDegradationDataset'}),
    'loss': frozenset({'AsymmetricLoss', 'EdgeLoss', 'FineGrainedDynamicLoss', 'MSSSIML1Loss', 'MSSSIMLoss',
                       'SPLoss', 'SSIMLoss', 'TLWLoss', 'UDLLoss'}),
    'metric': frozenset({'calculate_dists', 'calculate_fsim', 'calculate_gmsd', 'calculate_iw_ssim',
                         'calculate_l1_1000', 'calculate_l2_1000', 'calculate_lpips', 'calculate_ms_ssim',
                         'calculate_rmse'}),
    'model': frozenset({'FGDModel', 'StageSupervisedModel', 'TLWModel', 'UDLModel'}),
}


class _FunctionalTensorLoader:

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        from torchvision.transforms.functional import rgb_to_grayscale
        module.rgb_to_grayscale = rgb_to_grayscale


class FunctionalTensorFinder:
    """Last on ``sys.meta_path``: a torchvision that still has the module wins."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != FUNCTIONAL_TENSOR:
            return None
        from importlib.machinery import ModuleSpec
        return ModuleSpec(fullname, _FunctionalTensorLoader())


def close_names(name, known):
    """The names in ``known`` closest to ``name`` (difflib's close matches, then case-insensitive equals).

    Args:
        name (str): the name asked for.
        known (Iterable[str]): the names it may have meant.

    Returns:
        list[str]: at most five close matches first, then names equal to ``name`` but for case.
    """
    import difflib

    known = sorted(known)
    close = difflib.get_close_matches(str(name), known, n=5, cutoff=0.6)
    return close + [k for k in known if k.lower() == str(name).lower() and k not in close]


def miss_message(registry, name):
    """BasicSR's KeyError text for ``name`` missing from ``registry``, plus the registered names close to it."""
    known = set(registry.keys()) | OUR_NAMES.get(registry._name, frozenset())
    close = close_names(name, known)
    hint = f'close matches: {", ".join(close)}' if close else f'registered: {", ".join(sorted(known))}'
    return f"No object named '{name}' found in '{registry._name}' registry! ({hint})"


def _resolve(registry, name):
    """Imports losses_plugin when ``name`` is one of ours and not registered yet (a lookup during that import,
    ``losses_plugin`` already in ``sys.modules``, does not import it again)."""
    ours = OUR_NAMES.get(getattr(registry, '_name', None), ())
    if isinstance(name, str) and name in ours and name not in registry._obj_map and 'losses_plugin' not in sys.modules:
        import losses_plugin  # noqa: F401  (registers every name of OUR_NAMES)


def teach(registry_module):
    """Wraps ``Registry.get`` and ``Registry.__contains__`` of ``registry_module`` (BasicSR's
    ``basicsr.utils.registry``) once: our names resolve lazily, misses name the close matches.

    Args:
        registry_module (module): the executed ``basicsr.utils.registry``.
    """
    import functools

    registry_class = registry_module.Registry
    if '_basicsr_get' in vars(registry_class):
        return
    basicsr_get, basicsr_contains = registry_class.get, registry_class.__contains__

    @functools.wraps(basicsr_get)
    def get(self, name, suffix='basicsr'):
        _resolve(self, name)
        try:
            return basicsr_get(self, name, suffix)
        except KeyError:
            raise KeyError(miss_message(self, name)) from None

    @functools.wraps(basicsr_contains)
    def contains(self, name):
        _resolve(self, name)
        return basicsr_contains(self, name)

    registry_class._basicsr_get = basicsr_get
    registry_class.get, registry_class.__contains__ = get, contains


class _TeachAfterExec:
    """The loader found for ``basicsr.utils.registry``; runs it, then :func:`teach`es its Registry."""

    def __init__(self, loader):
        self._loader = loader

    def __getattr__(self, name):  # get_source, get_filename, ... for tracebacks and inspect
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        try:
            teach(module)
        except Exception:  # noqa: BLE001  (a Registry unlike 1.4.2's is left as it is)
            pass


class RegistryFinder:
    """First on ``sys.meta_path``: finds ``basicsr.utils.registry`` with the finders after it and wraps its
    loader in :class:`_TeachAfterExec`; every other import is passed on at once."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != REGISTRY_MODULE:
            return None
        try:
            finders = sys.meta_path[sys.meta_path.index(self) + 1:]
            for finder in finders:
                spec = finder.find_spec(fullname, path, target) if hasattr(finder, 'find_spec') else None
                if spec is not None:
                    break
            else:
                return None
            if hasattr(spec.loader, 'exec_module'):
                spec.loader = _TeachAfterExec(spec.loader)
            return spec
        except Exception:  # noqa: BLE001  (then the import machinery finds it as it would without us)
            return None


def _registry_hook_wanted():
    return os.environ.get(NO_REGISTRY_HOOK, '') in ('', '0')


def install():
    """Installs both parts once (the registry part unless ``LOSSES_PLUGIN_NO_REGISTRY_HOOK=1``); never raises."""
    try:
        if not any(isinstance(f, FunctionalTensorFinder) for f in sys.meta_path):
            sys.meta_path.append(FunctionalTensorFinder())
        if not _registry_hook_wanted():
            return
        if REGISTRY_MODULE in sys.modules:
            teach(sys.modules[REGISTRY_MODULE])
        elif not any(isinstance(f, RegistryFinder) for f in sys.meta_path):
            sys.meta_path.insert(0, RegistryFinder())
    except Exception:  # noqa: BLE001  (runs in every process of the environment: BasicSR stays as it is)
        pass
