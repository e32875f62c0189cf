"""Bad command lines and option files get one clear message (exit 2), never a deep traceback."""
import sys

import pytest
from basicsr.utils.options import parse_options
from conftest import tiny_options, write_options

from losses_plugin import cli


def run_main(args, capsys):
    code = cli.main(args)
    return code, capsys.readouterr().err


def test_no_command_prints_usage(capsys):
    code, err = run_main([], capsys)
    assert code == 2 and err.startswith('usage: basicsr') and '{train,test}' in err


@pytest.mark.parametrize('args, shows', [
    (['--help'], ['{train,test}', 'train a model from an option file', 'examples:', 'torchrun']),
    (['train', '--help'], ['-opt FILE.yml', '--auto_resume', '--launcher {none,pytorch,slurm}', 'examples:']),
    (['test', '--help'], ['-opt FILE.yml', '--launcher {none,pytorch,slurm}', 'examples:']),
])
def test_help_prints_usage_and_exits_0(args, shows, capsys):
    code = cli.main(args)
    out = capsys.readouterr().out
    assert code == 0 and out.startswith('usage: basicsr')
    assert all(text in out for text in shows), out
    assert ('[--auto_resume]' in out) == (args[0] == 'train')  # only training resumes


def test_version_names_the_package_and_basicsr(capsys):
    import basicsr

    import losses_plugin
    assert cli.main(['--version']) == 0
    assert capsys.readouterr().out.strip() == f'losses_plugin {losses_plugin.__version__}, BasicSR {basicsr.__version__}'


def test_console_script_help_exits_0():
    import subprocess
    from pathlib import Path
    result = subprocess.run([str(Path(sys.executable).parent / 'basicsr'), '--help'], capture_output=True, text=True)
    assert result.returncode == 0 and 'usage: basicsr' in result.stdout


def test_missing_opt_argument(capsys):
    code, err = run_main(['train'], capsys)
    assert code == 2 and 'the following arguments are required: -opt' in err


def test_missing_option_file(tmp_path, capsys):
    code, err = run_main(['train', '-opt', str(tmp_path / 'nope.yml')], capsys)
    assert code == 2
    assert "option file '" in err and "nope.yml' does not exist" in err


HOSTILE = "name: x\nmodel_type: !!python/object/apply:os.system ['touch {marker}']\n"


def test_python_tags_are_refused_and_not_executed(tmp_path, capsys):
    marker = tmp_path / 'executed'
    opt_file = tmp_path / 'hostile.yml'
    opt_file.write_text(HOSTILE.format(marker=marker))
    code, err = run_main(['train', '-opt', str(opt_file)], capsys)
    assert code == 2
    assert 'python/object/apply' in err and 'nothing in it was executed' in err
    assert not marker.exists()


def test_basicsr_parse_options_reads_safely_after_import(tmp_path, monkeypatch):
    """BasicSR's own reader (used by its train.py) is patched too: the tag raises, nothing runs."""
    import yaml
    marker = tmp_path / 'executed'
    opt_file = tmp_path / 'hostile.yml'
    opt_file.write_text(HOSTILE.format(marker=marker))
    monkeypatch.setattr(sys, 'argv', ['train.py', '-opt', str(opt_file)])
    with pytest.raises(yaml.constructor.ConstructorError):
        parse_options(str(tmp_path), is_train=True)
    assert not marker.exists()


def test_invalid_yaml(tmp_path, capsys):
    opt_file = tmp_path / 'broken.yml'
    opt_file.write_text('name: [unclosed\n')
    code, err = run_main(['train', '-opt', str(opt_file)], capsys)
    assert code == 2 and 'is not valid YAML' in err


def test_missing_dataset_path_names_key_and_preparation(demo_data, tmp_path, capsys):
    opt = tiny_options(demo_data, 'missing_data')
    opt['datasets']['train']['dataroot_gt'] = 'datasets/DIV2K/DIV2K_train_HR_sub.lmdb'
    del opt['datasets']['train']['prepare']  # no hint of its own: the general one
    code, err = run_main(['train', '-opt', str(write_options(opt, tmp_path / 'o.yml'))], capsys)
    assert code == 2
    assert "datasets.train.dataroot_gt: 'datasets/DIV2K/DIV2K_train_HR_sub.lmdb' does not exist" in err
    assert 'scripts/prepare_dataset.py' in err and 'options/demo/' in err


@pytest.mark.parametrize('section, key, wrong, match', [
    ('network_g', 'type', 'EDSRR', 'network_g.type'),
    ('model_type', None, 'SRModle', 'model_type'),
])
def test_unknown_registry_name_lists_close_matches(demo_data, tmp_path, capsys, section, key, wrong, match):
    opt = tiny_options(demo_data, 'bad_name')
    if key is None:
        opt[section] = wrong
    else:
        opt[section][key] = wrong
    code, err = run_main(['train', '-opt', str(write_options(opt, tmp_path / 'o.yml'))], capsys)
    assert code == 2
    assert f"{match}: '{wrong}' is not in BasicSR's" in err
    assert 'close matches: ' + wrong[:4] in err


def test_unknown_loss_matches_case_insensitively(demo_data, tmp_path, capsys):
    opt = tiny_options(demo_data, 'bad_loss')
    opt['train']['pixel_opt']['type'] = 'l1loss'
    code, err = run_main(['train', '-opt', str(write_options(opt, tmp_path / 'o.yml'))], capsys)
    assert code == 2
    assert "train.pixel_opt.type: 'l1loss' is not in BasicSR's loss registry" in err and 'L1Loss' in err


def test_missing_required_key(tmp_path, capsys):
    opt_file = tmp_path / 'o.yml'
    opt_file.write_text('name: x\nnum_gpu: 0\n')
    code, err = run_main(['test', '-opt', str(opt_file)], capsys)
    assert code == 2 and 'lacks the key(s) model_type, datasets, path' in err


def test_testing_with_saved_images_needs_suffix(demo_data, tmp_path, capsys):
    opt = tiny_options(demo_data, 'no_suffix')
    opt['val']['save_img'] = True
    code, err = run_main(['test', '-opt', str(write_options(opt, tmp_path / 'o.yml'))], capsys)
    assert code == 2 and 'val.suffix: BasicSR needs it' in err


def test_keep_checkpoints_is_checked_before_training(demo_data, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    opt = tiny_options(demo_data, 'keep_none')
    opt['logger']['keep_checkpoints'] = 0
    code, err = run_main(['train', '-opt', str(write_options(opt, tmp_path / 'o.yml'))], capsys)
    assert code == 2 and 'logger.keep_checkpoints must be an integer >= 1' in err and 'got 0' in err
    assert not (tmp_path / 'experiments').exists()  # refused with the other option checks, before any run
