"""The YAML loader for option files: PyYAML's safe loader (no ``!!python/...`` tags, so a hostile
option file cannot run code) building ``OrderedDict`` mappings, so key order is kept as BasicSR's
own loader keeps it."""
import collections

import yaml


class SafeOrderedLoader(getattr(yaml, 'CSafeLoader', yaml.SafeLoader)):
    """PyYAML's safe loader (no Python object tags) that builds ``OrderedDict`` mappings."""


def _construct_ordered_mapping(loader, node):
    loader.flatten_mapping(node)
    return collections.OrderedDict(loader.construct_pairs(node))


SafeOrderedLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_ordered_mapping)
