"""Discovery of registered classes by file suffix, as BasicSR does for its own packages."""
import importlib
import pkgutil

# subpackage -> file suffix whose modules register classes into one BasicSR registry
REGISTERED_MODULES = {
    'losses_plugin.archs': '_arch',
    'losses_plugin.data': '_dataset',
    'losses_plugin.losses': '_loss',
    'losses_plugin.metrics': '_metric',
    'losses_plugin.models': '_model',
}


def import_registered_modules():
    """Imports every ``*_arch.py``, ``*_dataset.py``, ``*_loss.py``, ``*_metric.py``, ``*_model.py``."""
    for package_name, suffix in REGISTERED_MODULES.items():
        package = importlib.import_module(package_name)
        for module in pkgutil.iter_modules(package.__path__):
            if module.name.endswith(suffix):
                importlib.import_module(f'{package_name}.{module.name}')
