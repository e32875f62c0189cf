"""Every ``Default:`` an architecture's docstring states is the default its constructor has (the docstrings
are where users read the papers' hyperparameters; a default changed in one place only is a silent change)."""
import ast
import importlib
import inspect
import pkgutil
import re

import pytest
import yaml

import losses_plugin.archs

MODULES = sorted(info.name for info in pkgutil.iter_modules(losses_plugin.archs.__path__))  # a new file included
ARGUMENT = re.compile(r'^ {8}(\w+) \([^)]*\):(.*?)(?=^ {8}\w+ \(|\Z)', re.S | re.M)
# documented in words or as an expression, checked here by hand
PROSE = {('HAT', 'depths'): (6,) * 6, ('HAT', 'num_heads'): (6,) * 6,
         ('NLSN', 'rgb_mean'): (0.4488, 0.4371, 0.4040),  # "DIV2K's (0.4488, 0.4371, 0.4040)"
         ('FGDNet', 'class_module'): None}  # "{}": None is read as no options


def documented_defaults():
    for module_name in MODULES:
        module = importlib.import_module(f'losses_plugin.archs.{module_name}')
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__ or not cls.__doc__:
                continue
            for argument, text in ARGUMENT.findall(cls.__doc__):
                found = re.search(r'Default: (.*?)(?:\.\s|\.?$)', ' '.join(text.split()))
                if found:
                    yield pytest.param(cls, argument, found.group(1), id=f'{name}-{argument}')


def literal(text):
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = yaml.safe_load(text)  # true/false/none as the YAML options write them
    return tuple(value) if isinstance(value, list) else value


CASES = list(documented_defaults())


def test_the_docstrings_document_defaults_of_every_method_network():
    documented = {case.values[0].__name__ for case in CASES}
    assert {'TLWWeightingNet', 'FGDNet', 'ClassModule', 'UncertaintySRNet'} <= documented
    assert len(CASES) > 80


@pytest.mark.parametrize('cls, argument, text', CASES)
def test_documented_default_is_the_constructor_s(cls, argument, text):
    parameters = inspect.signature(cls.__init__).parameters
    assert argument in parameters, f'{cls.__name__} documents {argument!r}, which it does not take'
    expected = PROSE[cls.__name__, argument] if (cls.__name__, argument) in PROSE else literal(text)
    default = parameters[argument].default
    assert (tuple(default) if isinstance(default, list) else default) == expected
