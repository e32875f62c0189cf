"""Start-up import hook: ``torchvision.transforms.functional_tensor`` for BasicSR 1.4.2.

torchvision 0.17 removed that module; BasicSR 1.4.2 imports ``rgb_to_grayscale`` from it on
``import basicsr``. The hook answers only when no real module of that name exists, and it
imports nothing until BasicSR asks, so interpreter start-up stays cheap. It is installed by
``losses_plugin_shim.pth`` at start-up and again by ``losses_plugin.compat`` on import.
"""
import importlib.abc
import importlib.machinery
import sys

MODULE = 'torchvision.transforms.functional_tensor'


class _FunctionalTensorLoader(importlib.abc.Loader):

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        from torchvision.transforms.functional import rgb_to_grayscale
        module.rgb_to_grayscale = rgb_to_grayscale


class FunctionalTensorFinder(importlib.abc.MetaPathFinder):
    """Last on ``sys.meta_path``: a torchvision that still has the module wins."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != MODULE:
            return None
        return importlib.machinery.ModuleSpec(fullname, _FunctionalTensorLoader())


def install():
    if not any(isinstance(f, FunctionalTensorFinder) for f in sys.meta_path):
        sys.meta_path.append(FunctionalTensorFinder())
