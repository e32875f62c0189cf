"""losses_plugin: restoration losses from five papers, registered into BasicSR 1.4.2.

``import losses_plugin`` (first, before ``import basicsr`` where possible) applies the
compatibility patches of :mod:`losses_plugin.compat` and registers every loss, architecture,
model, dataset and metric the package defines into BasicSR's registries, the way BasicSR
discovers its own: by file suffix.
"""
from losses_plugin import compat

compat.apply()

from losses_plugin.registration import import_registered_modules  # noqa: E402

import_registered_modules()

__version__ = '0.1.0'
