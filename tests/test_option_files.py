"""Every experiment option file parses, names registered classes, and matches its generator; every
CPU demo twin trains a few iterations through `basicsr train`."""
import importlib.util
import json
import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from basicsr.archs import build_network
from conftest import PYTHON, REPO

from losses_plugin.options import check_registered_names, read_option_file

OPTION_FILES = sorted((REPO / 'options').rglob('*.yml'))
DEMO_FILES = sorted((REPO / 'options' / 'demo').glob('*.yml'))


def training_features(path):
    """What a twin exercises beyond its numbers: its model, each network (and backbone), each loss, its
    dataset, degradations and validation metrics."""
    opt = read_option_file(str(path))
    features = {('model', opt['model_type']), ('dataset', opt['datasets']['train']['type'])}
    for key, net in opt.items():
        if key.startswith('network_'):
            features.add(('network', key, net['type'], (net.get('backbone') or {}).get('type')))
    for key, loss in opt['train'].items():
        if key.endswith('_opt') and isinstance(loss, dict):
            features.add(('loss', key, *(loss.get(k) for k in ('type', 'base', 'form', 'stage', 'mask'))))
    features.update(('degradation', d['type']) for d in opt['datasets']['train'].get('degradations', []))
    return features | metric_types(opt)


def metric_types(opt):
    return {('metric', m['type']) for m in opt['val']['metrics'].values()}


def covering_twins(paths):
    """Few twins that together exercise every feature of all of them (greedy set cover, ties by name): the
    alpha sweep, the TLW scale grid, one network under four losses each covered elsewhere, ... differ only
    in what the parsing test above checks for every file."""
    uncovered = {path: training_features(path) for path in sorted(paths)}
    chosen = []
    while any(uncovered.values()):
        best = max(uncovered, key=lambda p: len(uncovered[p]))  # the first by name among equals
        chosen.append(best)
        covered = uncovered.pop(best)
        uncovered = {path: features - covered for path, features in uncovered.items()}
    return sorted(chosen)


def validating_all_metrics(twins):
    """The twins that validate with all their metrics: the first (by name) to bring a metric type no earlier
    twin has; the others validate PSNR only (nine full-image Zhao metrics take longer than the training)."""
    seen, chosen = set(), set()
    for path in twins:
        metrics = metric_types(read_option_file(str(path)))
        if metrics - seen:
            chosen.add(path)
        seen |= metrics
    return chosen


TWINS = covering_twins(DEMO_FILES)
FULL_VALIDATION = validating_all_metrics(TWINS)


def load_generator():
    spec = importlib.util.spec_from_file_location('generate_options', REPO / 'scripts' / 'generate_options.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_files_match_the_generator():
    generated = load_generator().option_files()
    committed = {str(p.relative_to(REPO)): p.read_text() for p in OPTION_FILES}
    assert committed == generated


@pytest.mark.parametrize('path', OPTION_FILES, ids=lambda p: str(p.relative_to(REPO / 'options')))
def test_option_file_parses_and_names_registered_classes(path):
    opt = read_option_file(str(path))
    check_registered_names(opt)
    assert opt['name'] == ('demo_' if path.parent.name == 'demo' else '') + path.stem
    for dataset in opt['datasets'].values():
        assert dataset.get('prepare'), f'{path.name}: datasets need a `prepare:` hint'


@pytest.mark.parametrize('path', [REPO / 'options' / 'edsr_sploss.yml', REPO / 'options' / 'dncnn_s25_asy_mse.yml'],
                         ids=lambda p: p.name)
def test_full_run_without_data_says_what_to_prepare(path, tmp_path):
    result = subprocess.run([PYTHON, '-m', 'losses_plugin', 'train', '-opt', str(path)], cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "datasets.train.dataroot_gt: 'datasets/DIV2K/DIV2K_train_HR_sub.lmdb' does not exist" in result.stderr
    assert 'Prepare it with: python scripts/prepare_dataset.py --hr datasets/DIV2K/DIV2K_train_HR' in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize('path', TWINS, ids=lambda p: p.stem)
def test_demo_twin_trains_a_few_iterations(path, demo_data, tmp_path):
    (tmp_path / 'datasets').symlink_to(demo_data.parent)  # the twins read datasets/demo/...
    force = ['train:total_iter=2', 'logger:print_freq=1', 'datasets:train:num_worker_per_gpu=0',
             'datasets:train:dataset_enlarge_ratio=1', 'datasets:train:batch_size_per_gpu=2',
             'path:pretrain_network_g=~']
    estimator = read_option_file(str(path))['train'].get('uncertainty_estimator')
    if estimator:  # UDL stage udl: a stage-1 network (random here) stands in for the esu run
        checkpoint = tmp_path / 'esu.pth'
        torch.save({'params': build_network(estimator['network']).state_dict()}, checkpoint)
        force.append(f'train:uncertainty_estimator:pretrain_path={checkpoint}')
    opt_file = path
    if path not in FULL_VALIDATION:
        opt = json.loads(json.dumps(read_option_file(str(path))))
        opt['val']['metrics'] = {'psnr': opt['val']['metrics']['psnr']}
        opt_file = tmp_path / path.name
        opt_file.write_text(yaml.safe_dump(opt, sort_keys=False))
    result = subprocess.run([PYTHON, '-m', 'losses_plugin', 'train', '-opt', str(opt_file), '--force_yml', *force],
                            cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    name = read_option_file(str(path))['name']
    assert (tmp_path / 'experiments' / name / 'models' / 'net_g_latest.pth').is_file()
    log = ''.join(p.read_text() for p in (tmp_path / 'experiments' / name).glob('train_*.log'))
    assert 'iter:       2' in log and '# psnr:' in log
