"""The documentation cannot drift from the code (issue 32, item 4).

Every ```yaml block of README.md and docs/**/*.md is an option file or a fragment of one: it is parsed
(duplicate keys are an error), a fragment is laid over the demo option file, and the result goes through
the strict option checks `basicsr train` runs (registered names, every key a class reads, the step
options' sub-keys). Every command line in a ```bash block and every inline `basicsr ...`,
`python -m losses_plugin ...`, `python scripts/X.py ...`, `bash scripts/X.sh ...` that gives an option is parsed by that CLI's or
script's own argparse: the script must exist and no argument may be left unknown.

Not read: the reports scripts write under docs/results/ (their commands are the scripts' own). Notation the
pages use in commands: `a|b` (one of), `[--flag]` (optional): each alternative is checked. Lines
`--8<-- "path"` in a block include that file (pymdownx.snippets), and the file is what is checked.
"""
import argparse
import contextlib
import copy
import io
import re
import runpy
import shlex
import sys
from pathlib import Path

import pytest
import yaml

from losses_plugin.checks import OptionError
from losses_plugin.options import check_registered_names
from losses_plugin.strict_options import check_option_keys

REPO = Path(__file__).resolve().parents[1]
BASE_OPTIONS = REPO / 'options' / 'demo' / 'edsr_l1.yml'
WRITTEN_BY_SCRIPTS = ('docs/results/', )
FENCE = re.compile(r'^(?P<indent> *)(?P<fence>```+|~~~+)(?P<info>[^\n`]*)$')
SNIPPET = re.compile(r'^\s*--8<--\s+"(?P<path>[^"]+)"\s*$')
INLINE = re.compile(r'(?<!`)`(?P<code>(?:basicsr|python -m losses_plugin|python scripts/|bash scripts/)[^`]*)`(?!`)')


def doc_files():
    files = [REPO / 'README.md'] + sorted((REPO / 'docs').rglob('*.md'))
    return [f for f in files if not str(f.relative_to(REPO)).startswith(WRITTEN_BY_SCRIPTS)]


def fenced_blocks(text):
    """(language, first line number, body) of every fenced block of a Markdown text."""
    blocks, lines, i = [], text.split('\n'), 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, indent, start = m.group('fence'), len(m.group('indent')), i + 1
        language = m.group('info').strip().split(' ')[0].lstrip('{.').rstrip('}') if m.group('info').strip() else ''
        i += 1
        body = []
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i][indent:] if lines[i][:indent].strip() == '' else lines[i])
            i += 1
        blocks.append((language, start, '\n'.join(body)))
        i += 1
    return blocks


def prose(text):
    """The text outside fenced blocks (where inline commands are read)."""
    out, inside, fence = [], False, None
    for line in text.split('\n'):
        m = FENCE.match(line)
        if m and (not inside or line.strip().startswith(fence)):
            inside, fence = (not inside), m.group('fence')
            continue
        if not inside:
            out.append(line)
    return '\n'.join(out)


def with_snippets(body):
    """The block with each ``--8<-- "path"`` line replaced by that file (relative to the repository)."""
    out = []
    for line in body.split('\n'):
        m = SNIPPET.match(line)
        if m:
            path = REPO / m.group('path')
            assert path.is_file(), f'snippet {m.group("path")} does not exist'
            out.append(path.read_text())
        else:
            out.append(line)
    return '\n'.join(out)


class UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader for which a key given twice in one mapping is an error (the second would win silently)."""


def _mapping(loader, node, deep=False):
    keys = [loader.construct_object(k, deep=deep) for k, _ in node.value]
    twice = sorted({str(k) for k in keys if keys.count(k) > 1})
    if twice:
        raise yaml.constructor.ConstructorError(None, None, f'key(s) given twice: {", ".join(twice)}',
                                                node.start_mark)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                                lambda loader, node: dict(_mapping(loader, node, deep=True)))


def yaml_blocks():
    for f in doc_files():
        for language, line, body in fenced_blocks(f.read_text()):
            if language in ('yaml', 'yml'):
                yield pytest.param(body, id=f'{f.relative_to(REPO)}:{line}')


def merged(base, fragment):
    """``fragment`` laid over ``base``: mappings merge key by key, anything else replaces."""
    out = copy.deepcopy(base)
    for key, value in fragment.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and 'type' not in value:
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def step_option_problems(train):
    """The sub-keys of the step options (read when a model is built, so the key check above misses them)."""
    from losses_plugin.models import loss_spike, training_step
    from losses_plugin.models.tlw_model import K_SCHEDULE

    training_step._read_amp(train.get('amp'))
    training_step._read_grad_clip(train.get('grad_clip'))
    training_step._read_compile(train.get('compile'))
    training_step._read_max_skips(train.get('non_finite'))
    for key in ('channels_last', 'deterministic'):
        training_step._read_flag(key, train.get(key))
    loss_spike._read_options(train.get('loss_spike'))
    unknown = set(train.get('tlw') or {}) - {'judge', 'wc_eps', 'iters_per_epoch', *K_SCHEDULE}
    if unknown:
        raise OptionError(f'train.tlw: unknown key(s) {", ".join(sorted(unknown))}')


def check_option_snippet(text):
    """Raises (OptionError, yaml.YAMLError, AssertionError) when ``text`` is not a valid option file or fragment."""
    snippet = yaml.load(with_snippets(text), Loader=UniqueKeyLoader)
    assert isinstance(snippet, dict) and snippet, 'a YAML block of the docs must be a mapping of options'
    complete = {'name', 'model_type', 'datasets'} <= set(snippet)
    opt = snippet if complete else merged(yaml.safe_load(BASE_OPTIONS.read_text()), snippet)
    check_registered_names(opt)
    check_option_keys(opt)
    step_option_problems(opt.get('train') or {})


@pytest.mark.parametrize('text', list(yaml_blocks()))
def test_every_yaml_block_of_the_docs_passes_the_strict_option_checks(text):
    check_option_snippet(text)


def test_the_yaml_check_fails_on_a_misspelt_key_an_unknown_type_and_a_duplicate():
    check_option_snippet('train:\n  pixel_opt: {type: SPLoss, alpha: 2.0}\n')
    for bad in ('train:\n  pixel_opt: {type: SPLoss, alpah: 2.0}\n', 'train:\n  pixel_opt: {type: SPLos}\n',
                'train:\n  loss_spike: {action: rewind, windw: 50}\n', 'train:\n  amp: {dtype: float8}\n',
                'train:\n  pixel_opt: {type: SSIMLoss}\n  pixel_opt: {type: MSSSIMLoss}\n'):
        with pytest.raises((OptionError, yaml.YAMLError)):
            check_option_snippet(bad)


# ---- commands ----------------------------------------------------------------------------------------------

def command_lines(text):
    """Each command of a shell block: continuation lines joined, comments dropped, split at && and ;."""
    joined = re.sub(r'\\\n\s*', ' ', text)
    for line in joined.split('\n'):
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError:
            tokens = line.split()
        command = []
        for token in [part for t in tokens for part in ([t[:-1], ';'] if t.endswith(';') else [t])] + [';']:
            if token in ('&&', ';', '||'):
                if command:
                    yield command
                command = []
            else:
                command.append(token)


def variants(tokens):
    """The documented notation made concrete: ``[--x]`` -> ``--x``; ``a|b`` -> one command per alternative."""
    tokens = [t[1:-1] if t.startswith('[') and t.endswith(']') else t for t in tokens]
    tokens = [t.strip('[]') if t.startswith('[-') or t.endswith(']') else t for t in tokens]
    choices = [t.split('|') if '|' in t and not t.startswith(('{', '"', "'")) else [t] for t in tokens]
    count = max(len(c) for c in choices) if choices else 1
    return [[c[min(i, len(c) - 1)] for c in choices] for i in range(count)]


def program_and_args(tokens):
    """('cli' | 'scripts/X.py' | 'scripts/X.sh', arguments) of a command this package provides, else None."""
    while tokens and re.match(r'^[A-Z_]+=', tokens[0]):  # OMP_NUM_THREADS=1 ...
        tokens = tokens[1:]
    if not tokens:
        return None
    if tokens[0] in ('nice', 'time') or tokens[0] in ('torchrun', 'srun'):
        if '-m' in tokens and tokens[tokens.index('-m') + 1:tokens.index('-m') + 2] == ['losses_plugin']:
            return 'cli', tokens[tokens.index('-m') + 2:]
        rest = [t for t in tokens[1:] if not t.startswith('-')]
        return program_and_args(tokens[tokens.index(rest[0]):]) if rest else None
    if tokens[0] == 'basicsr':
        return 'cli', tokens[1:]
    if tokens[0] in ('python', 'python3') and len(tokens) > 1:
        if tokens[1:3] == ['-m', 'losses_plugin']:
            return 'cli', tokens[3:]
        if tokens[1].startswith('scripts/'):
            return tokens[1], tokens[2:]
    if tokens[0] == 'bash' and len(tokens) > 1 and tokens[1].startswith('scripts/'):
        return tokens[1], tokens[2:]
    return None


def documented_commands():
    for f in doc_files():
        text = f.read_text()
        where = str(f.relative_to(REPO))
        for language, line, body in fenced_blocks(text):
            if language in ('bash', 'sh', 'shell', 'console'):
                for tokens in command_lines(body):
                    if program_and_args(tokens):
                        yield pytest.param(tokens, id=f'{where}:{line}:{" ".join(tokens)[:60]}')
        for m in INLINE.finditer(prose(text)):
            for tokens in command_lines(m.group('code')):
                # in prose, `basicsr train` names the program and `basicsr train: error: ...` quotes a message:
                # a span is a command line when it gives an option
                if program_and_args(tokens) and any(t.startswith('-') for t in tokens) \
                        and not any(t.endswith(':') for t in tokens[:3]):
                    yield pytest.param(tokens, id=f'{where}:inline:{" ".join(tokens)[:60]}')


class _Parser(Exception):
    def __init__(self, parser):
        self.parser = parser


_PARSERS = {}


def script_parser(script):
    """The ArgumentParser a script builds, caught as it starts parsing (the script does nothing else)."""
    if script not in _PARSERS:
        def catch(self, *args, **kwargs):
            raise _Parser(self)

        saved = argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args, sys.argv
        argparse.ArgumentParser.parse_args = argparse.ArgumentParser.parse_known_args = catch
        sys.argv = [str(REPO / script)]
        try:
            runpy.run_path(str(REPO / script), run_name='__main__')
        except _Parser as caught:
            _PARSERS[script] = caught.parser
        finally:
            argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args, sys.argv = saved
    return _PARSERS[script]


def exact(parser):
    """No abbreviated options (argparse takes `--seed` for `--seeds`): the docs spell each option out."""
    parser.allow_abbrev = False
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                exact(sub)


def command_problem(tokens):
    """None when the command's program exists and its parser takes every argument, else why not."""
    program, args = program_and_args(tokens)
    if program == 'cli':
        from losses_plugin.cli import _normalise_args, build_parser
        parser, args = build_parser(), _normalise_args(args)
    elif not (REPO / program).is_file():
        return f'{program} does not exist'
    elif program.endswith('.sh'):
        return None  # shell scripts: test.sh hands its arguments to pytest, mutation_test.sh checks its own
    elif 'ArgumentParser' not in (REPO / program).read_text():
        return f'{program} takes no options, got {args}' if any(a.startswith('-') for a in args) else None
    else:
        parser = script_parser(program)
    exact(parser)
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            _, unknown = parser.parse_known_args(args)
    except SystemExit as done:
        return None if done.code == 0 else stderr.getvalue().strip().splitlines()[-1]
    return f'unknown arguments {unknown}' if unknown else None


@pytest.mark.parametrize('tokens', list(documented_commands()))
def test_every_documented_command_parses_with_its_programs_own_arguments(tokens):
    problems = [(v, p) for v in variants(tokens) for p in [command_problem(v)] if p]
    assert not problems, problems


def test_the_command_check_fails_on_an_unknown_flag_a_missing_script_and_a_bad_choice():
    for good in ('basicsr train -opt x.yml --auto_resume', 'python scripts/reproduce.py --paper tlw --scale demo',
                 'torchrun --nproc_per_node=4 -m losses_plugin train -opt x.yml --launcher pytorch'):
        assert all(command_problem(v) is None for v in variants(shlex.split(good))), good
    for bad in ('basicsr train -opt x.yml --auto-resume', 'basicsr test -opt x.yml --auto_resume',
                'python scripts/reproduce.py --paper tlw --scales demo', 'python scripts/reprodcue.py',
                'basicsr train -opt x.yml --launcher mpi', 'python scripts/reproduce.py --paper tlw --seed 2'):
        assert any(command_problem(v) for v in variants(shlex.split(bad))), bad


def test_the_docs_list_commands_and_yaml_at_all():
    """Guards the readers above: they find the blocks the pages have (a broken fence regex would pass silently)."""
    assert len(list(yaml_blocks())) >= 12
    assert len(list(documented_commands())) >= 40


# ---- the API reference -------------------------------------------------------------------------------------

def test_every_registered_name_and_module_is_in_the_api_reference():
    """Each module of the package has its `::: module` in docs/api/, so every registered class is documented."""
    pages = '\n'.join(p.read_text() for p in (REPO / 'docs' / 'api').glob('*.md'))
    documented = set(re.findall(r'^::: (\S+)', pages, re.M))
    modules = {'losses_plugin.' + '.'.join(p.relative_to(REPO / 'losses_plugin').with_suffix('').parts)
               for p in (REPO / 'losses_plugin').rglob('*.py') if p.name not in ('__init__.py', '__main__.py')}
    modules |= {f'losses_plugin.archs.{p.stem}' for p in (REPO / 'archs').glob('*.py') if p.name != '__init__.py'}
    assert modules - documented == set()
    from losses_plugin_shim import OUR_NAMES
    from basicsr.utils import registry
    for registry_name, names in OUR_NAMES.items():
        table = getattr(registry, f'{registry_name.upper()}_REGISTRY')
        for name in names:
            assert table.get(name).__module__ in documented, name


def test_the_readmes_relative_links_point_to_files_that_exist():
    """The site's links are checked by `mkdocs build --strict`; the README is outside the site."""
    links = re.findall(r'\]\(([^)\s]+)\)', (REPO / 'README.md').read_text())
    assert links
    missing = [link for link in links if not link.startswith(('http://', 'https://'))
               and not (REPO / link.split('#')[0]).exists()]
    assert missing == []


# ---- the papers' option tables -------------------------------------------------------------------------------

PAGE_CLASSES = {'sploss': ['SPLoss'], 'asymmetric': ['AsymmetricLoss'],
                'zhao': ['SSIMLoss', 'MSSSIMLoss', 'MSSSIML1Loss'], 'tlw': [], 'fgd': []}


def option_defaults(owner):
    """{option: default} of a registered loss or network, or of ``train.tlw`` (inspect.Parameter.empty: required)."""
    import inspect

    from basicsr.utils.registry import ARCH_REGISTRY, LOSS_REGISTRY

    if owner == 'train.tlw':
        from losses_plugin.losses.tlw_loss import WC_EPS
        from losses_plugin.models.tlw_model import K_SCHEDULE
        return dict(K_SCHEDULE, wc_eps=WC_EPS, judge=None, iters_per_epoch=None)
    cls = LOSS_REGISTRY.get(owner) if owner in LOSS_REGISTRY else ARCH_REGISTRY.get(owner)
    parameters = inspect.signature(cls.__init__).parameters.values()
    return {p.name: p.default for p in parameters if p.name != 'self' and p.kind == p.POSITIONAL_OR_KEYWORD}


def option_rows():
    """(page, option, its owners, the documented default) of each row of a page's `| option | default |` tables."""
    for page in PAGE_CLASSES:
        table = False
        for line in (REPO / 'docs' / 'papers' / f'{page}.md').read_text().split('\n'):
            cells = [c.strip() for c in re.split(r'(?<!\\)\|', line)[1:-1]]
            if cells[:2] == ['option', 'default']:
                table = True
            elif not cells:
                table = False
            elif table and not set(cells[0]) <= {'-', ' '}:
                names = re.findall(r'`([^`]+)`', cells[0].split('(')[0])
                owners = re.search(r'\(([^)]*)\)', cells[0])
                owners = [o.strip() for o in owners.group(1).split(',')] if owners else PAGE_CLASSES[page]
                defaults = [cells[1]] if len(names) == 1 else [d.strip() for d in cells[1].split(',')]
                assert owners and len(defaults) == len(names), line
                for name, default in zip(names, defaults):
                    yield pytest.param(name, owners, default, id=f'{page}:{name}:{",".join(owners)}')


@pytest.mark.parametrize('name, owners, documented', list(option_rows()))
def test_each_option_in_the_papers_tables_exists_with_its_documented_default(name, owners, documented):
    import inspect

    value = None if documented == 'required' else yaml.safe_load(documented.replace('`', ''))
    for owner in owners:
        defaults = option_defaults(owner)
        assert name in defaults, f'{owner} has no option {name!r}'
        actual = defaults[name]
        if documented == 'required':
            assert actual is inspect.Parameter.empty, f'{owner}.{name} has a default, {actual!r}'
        elif isinstance(value, str) and not isinstance(actual, str):
            continue  # a default described in words or by a formula (`2*int(3.5*sigma + 0.5) + 1`)
        elif actual is None and value in ({}, []):
            continue  # None stands for no options
        elif isinstance(actual, tuple):
            assert list(actual) == value, (owner, name, actual)
        elif actual is not None:
            assert actual == value and type(actual) in (type(value), float), (owner, name, actual)


def test_the_option_tables_are_read():
    assert len(list(option_rows())) >= 40
