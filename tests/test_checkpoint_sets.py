"""Checkpoint files are written atomically and count only as complete sets (in-process, real files).

The kill-and-resume behaviour of the trainer with these files is in tests/test_kill_resume.py.
"""
import errno
import os
import re

import pytest
import torch

from losses_plugin import checkpoint_files, checkpoint_sets
from losses_plugin.checks import OptionError
from losses_plugin.resume import choose_resume_state, follow_set


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # --auto_resume looks in experiments/<name> under the working directory


def experiment(tmp_path, keep=None):
    root = tmp_path / 'experiments' / 'run'
    for folder in ('models', 'training_states'):
        (root / folder).mkdir(parents=True, exist_ok=True)
    opt = {'name': 'run', 'auto_resume': True, 'num_gpu': 0, 'network_g': {}, 'network_w': {},
           'logger': {} if keep is None else {'keep_checkpoints': keep},
           'path': {'experiments_root': str(root), 'models': str(root / 'models'),
                    'training_states': str(root / 'training_states')}}
    return root, opt


def save_set(writer, root, iteration, networks=('g', 'w')):
    """One set as the trainer writes it: RNG states, networks, then the state listing them."""
    writer.write(iteration, {'ranks': [torch.get_rng_state()]}, str(root / 'training_states' / f'{iteration}_rng.pth'))
    for net in networks:
        writer.write(iteration, {'params': {'weight': torch.full((64, ), float(iteration))}},
                     str(root / 'models' / f'net_{net}_{iteration}.pth'))
    # a tensor in the state, as its optimiser states hold: loading it maps it to a device
    writer.commit(iteration, {'epoch': 0, 'iter': iteration, 'optimizers': [{'step': torch.tensor(float(iteration))}]},
                  str(root / 'training_states' / f'{iteration}.state'))


def files_of(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob('*') if p.is_file())


def test_save_is_torch_save_and_its_record_is_the_files(tmp_path):
    path = tmp_path / 'net.pth'
    record = checkpoint_files.save({'a': torch.arange(10)}, str(path))
    assert torch.equal(torch.load(path, weights_only=True)['a'], torch.arange(10))
    assert record == checkpoint_files.record_of(str(path))
    assert record['size'] == path.stat().st_size
    assert os.listdir(tmp_path) == ['net.pth']


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / 'net_g_4.pth'
    checkpoint_files.save({'a': torch.zeros(1000)}, str(path))
    before = path.read_bytes()
    monkeypatch.setenv(checkpoint_files.FAULT_HOOK, 'ENOSPC:net_g_*.pth')
    with pytest.raises(OSError) as failed:
        checkpoint_files.save({'a': torch.ones(1000)}, str(path))
    assert failed.value.errno == errno.ENOSPC  # not torch's RuntimeError, which would hide it
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ['net_g_4.pth']


def test_a_failed_rename_removes_the_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / 'x.pth'

    def replace(src, dst):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, 'replace', replace)
    with pytest.raises(OSError):
        checkpoint_files.save({'a': 1}, str(path))
    assert os.listdir(tmp_path) == []


def test_the_state_lists_the_sets_files_and_a_complete_set_is_chosen(tmp_path):
    root, opt = experiment(tmp_path)
    save_set(checkpoint_sets.writer(opt), root, 4)
    state = checkpoint_sets.load_state(str(root / 'training_states' / '4.state'))
    assert sorted(state[checkpoint_sets.FILES_KEY]) == ['models/net_g_4.pth', 'models/net_w_4.pth',
                                                        'training_states/4_rng.pth']
    for name, record in state[checkpoint_sets.FILES_KEY].items():
        assert record == checkpoint_files.record_of(str(root / name))
    path, chosen = choose_resume_state(opt)
    assert path.endswith('training_states/4.state') and chosen['iter'] == 4


def tear(path, how):
    data = path.read_bytes()
    if how == 'truncate':
        path.write_bytes(data[:len(data) // 2])
    elif how == 'flip':  # same size, one byte changed: only the checksum sees it
        path.write_bytes(data[:-30] + bytes([data[-30] ^ 1]) + data[-29:])
    else:
        path.unlink()


@pytest.mark.parametrize('name, how, why', [
    ('training_states/8.state', 'truncate', 'cannot be loaded'),
    ('models/net_g_8.pth', 'truncate', 'has '),
    ('models/net_w_8.pth', 'flip', 'differs from the file that was written (CRC-32)'),
    ('training_states/8_rng.pth', 'delete', 'is missing'),
])
def test_auto_resume_steps_over_a_torn_set_with_one_warning(tmp_path, caplog, name, how, why):
    root, opt = experiment(tmp_path)
    writer = checkpoint_sets.writer(opt)
    save_set(writer, root, 4)
    save_set(writer, root, 8)
    (root / 'models' / 'net_g_8.pth.partial-123').write_bytes(b'torn')  # a stray temporary file too
    tear(root / name, how)
    path, state = choose_resume_state(opt)
    assert path.endswith('training_states/4.state') and state['iter'] == 4
    warnings = [r.getMessage() for r in caplog.records if 'steps over' in r.getMessage()]
    assert len(warnings) == 1 and str(root / name) in warnings[0] and why in warnings[0], warnings
    assert (root / name).exists() or how == 'delete'  # left on disk
    assert not (root / 'models' / 'net_g_8.pth.partial-123').exists()


def test_files_of_a_set_without_its_state_are_stepped_over(tmp_path, caplog):
    root, opt = experiment(tmp_path)
    writer = checkpoint_sets.writer(opt)
    save_set(writer, root, 4)
    checkpoint_files.save({'params': {}}, str(root / 'models' / 'net_g_8.pth'))  # killed before 8.state
    assert choose_resume_state(opt)[0].endswith('4.state')
    assert [r.getMessage() for r in caplog.records if 'steps over' in r.getMessage()] == [
        f'--auto_resume steps over the checkpoint of iteration 8: {root}/models/net_g_8.pth is there without the '
        'training state of its iteration: the save did not finish (left on disk).']


def test_an_explicit_torn_resume_state_is_one_line_naming_the_newest_complete_set(tmp_path):
    root, opt = experiment(tmp_path)
    writer = checkpoint_sets.writer(opt)
    save_set(writer, root, 4)
    save_set(writer, root, 8)
    tear(root / 'models' / 'net_g_8.pth', 'truncate')
    state = str(root / 'training_states' / '8.state')
    opt.update(auto_resume=False)
    opt['path']['resume_state'] = state
    with pytest.raises(OptionError) as error:
        choose_resume_state(opt)
    assert str(error.value).startswith(f'path.resume_state: {state} is not a complete checkpoint: '
                                       f'{root}/models/net_g_8.pth has ')
    assert str(error.value).endswith(f'the newest complete checkpoint there is {root}/training_states/4.state')


def test_resume_loads_the_networks_the_chosen_set_lists(tmp_path):
    root, opt = experiment(tmp_path)
    save_set(checkpoint_sets.writer(opt), root, 4)
    opt['path']['ignore_resume_networks'] = ['network_w']
    state = checkpoint_sets.load_state(str(root / 'training_states' / '4.state'))
    follow_set(opt, str(root / 'training_states' / '4.state'), state)
    assert opt['path']['pretrain_network_g'] == str(root / 'models' / 'net_g_4.pth')
    assert 'pretrain_network_w' not in opt['path']


def test_a_disk_error_skips_the_sets_state_and_the_next_save_succeeds(tmp_path, monkeypatch, caplog):
    root, opt = experiment(tmp_path)
    writer = checkpoint_sets.writer(opt)
    save_set(writer, root, 4)
    monkeypatch.setenv(checkpoint_files.FAULT_HOOK, 'ENOSPC:net_w_8.pth')
    save_set(writer, root, 8)
    assert writer.saved(8) == [f'{root}/models/net_w_8.pth: No space left on device']
    assert f'Could not save {root}/models/net_w_8.pth: [Errno 28] No space left on device' in caplog.text
    assert not (root / 'training_states' / '8.state').exists()
    assert not any(checkpoint_files.is_temporary(n) for n in files_of(root))
    monkeypatch.delenv(checkpoint_files.FAULT_HOOK)
    save_set(writer, root, 12)
    assert writer.saved(12) == [] and choose_resume_state(opt)[0].endswith('12.state')


def test_an_error_while_completing_in_the_background_is_a_warning_and_no_state(tmp_path, monkeypatch, caplog):
    root, opt = experiment(tmp_path)
    writer = checkpoint_sets.writer(opt)
    writer.background = True
    save_set(writer, root, 4)
    replace = os.replace

    def failing_replace(src, dst):
        if dst.endswith('net_g_8.pth'):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        replace(src, dst)

    monkeypatch.setattr(os, 'replace', failing_replace)
    save_set(writer, root, 8)
    assert writer.saved(8) == [f'{root}/models/net_g_8.pth: Input/output error']
    assert not (root / 'training_states' / '8.state').exists()
    assert not any(checkpoint_files.is_temporary(n) for n in files_of(root))
    assert writer.newest == str(root / 'training_states' / '4.state')


def test_keep_checkpoints_keeps_the_newest_complete_sets(tmp_path, monkeypatch):
    root, opt = experiment(tmp_path, keep=2)
    writer = checkpoint_sets.writer(opt)
    for iteration in (2, 4, 6):
        save_set(writer, root, iteration)
    assert files_of(root) == [f'{folder}/{name}' for folder, name in [
        ('models', 'net_g_4.pth'), ('models', 'net_g_6.pth'), ('models', 'net_w_4.pth'), ('models', 'net_w_6.pth'),
        ('training_states', '4.state'), ('training_states', '4_rng.pth'), ('training_states', '6.state'),
        ('training_states', '6_rng.pth')]]
    monkeypatch.setenv(checkpoint_files.FAULT_HOOK, 'ENOSPC:8_rng.pth')
    save_set(writer, root, 8)  # incomplete: 4 and 6 stay the two newest complete sets
    assert (root / 'training_states' / '4.state').exists() and not (root / 'training_states' / '8.state').exists()
    tear(root / 'models' / 'net_g_6.pth', 'truncate')
    monkeypatch.delenv(checkpoint_files.FAULT_HOOK)
    save_set(writer, root, 10)  # 6 is torn: 10 and 4 are the newest complete, 6 is left alone
    assert {p for p in files_of(root) if p.endswith('.state')} == {'training_states/10.state',
                                                                   'training_states/4.state',
                                                                   'training_states/6.state'}


@pytest.mark.parametrize('keep', [0, -1, 'two', True, 1.5])
def test_keep_checkpoints_must_be_a_positive_integer(keep):
    with pytest.raises(OptionError, match=r'^logger.keep_checkpoints must be an integer >= 1 .*, got '):
        checkpoint_sets.keep_checkpoints({'logger': {'keep_checkpoints': keep}})


def test_in_the_background_a_set_is_in_place_once_saved_returns(tmp_path):
    root, opt = experiment(tmp_path)
    writer = checkpoint_sets.writer(opt)
    writer.background = True
    save_set(writer, root, 4)
    assert writer.saved(4) == [] and checkpoint_sets.check_set(str(root / 'training_states' / '4.state'))[1] == []
    # a model whose save writes networks only: its staged files are put in place all the same
    writer.write(6, {'params': {}}, str(root / 'models' / 'net_g_6.pth'))
    assert not (root / 'models' / 'net_g_6.pth').exists()
    assert writer.saved(-1) == [] and (root / 'models' / 'net_g_6.pth').exists()
    assert not any(checkpoint_files.is_temporary(n) for n in files_of(root))


def test_the_file_is_fsynced_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    events = []
    fsync, replace = os.fsync, os.replace

    def spy_fsync(fd):
        events.append(('fsync', os.readlink(f'/proc/self/fd/{fd}')))
        fsync(fd)

    def spy_replace(src, dst):
        events.append(('replace', os.path.basename(src), os.path.basename(dst)))
        replace(src, dst)

    monkeypatch.setattr(os, 'fsync', spy_fsync)
    monkeypatch.setattr(os, 'replace', spy_replace)
    checkpoint_files.save({'a': 1}, str(tmp_path / 'x.pth'))
    temporary = f'x.pth.partial-{os.getpid()}'
    assert events == [('fsync', str(tmp_path / temporary)), ('replace', temporary, 'x.pth'), ('fsync', str(tmp_path))]


def test_a_state_that_lists_no_files_leaves_basicsrs_network_paths(tmp_path):
    """A training state written before checkpoint sets (plain BasicSR) lists no files: check_resume's paths stay."""
    root, opt = experiment(tmp_path)
    opt['path']['pretrain_network_g'] = 'models/net_g_4.pth as check_resume set it'
    follow_set(opt, str(root / 'training_states' / '4.state'), {'epoch': 0, 'iter': 4})
    assert opt['path']['pretrain_network_g'] == 'models/net_g_4.pth as check_resume set it'


@pytest.mark.parametrize('iteration, later', [
    (0, '; the checkpoint of this iteration will not count; training goes on'), (-1, '')])
def test_a_storage_error_is_recorded_and_warned_about_once(tmp_path, caplog, iteration, later):
    writer = checkpoint_sets.SetWriter(str(tmp_path))
    writer._storage_error(iteration, 'the/file.pth', OSError(errno.EROFS, 'Read-only file system'))
    assert writer.failed[iteration] == ['the/file.pth: Read-only file system']
    assert [r.getMessage() for r in caplog.records] == [
        f'Could not save the/file.pth: [Errno {errno.EROFS}] Read-only file system{later}.']
    with pytest.raises(OSError, match='Permission denied'):  # not a full or failing disk: a real bug
        writer._storage_error(iteration, 'the/file.pth', OSError(errno.EACCES, 'Permission denied'))


def test_the_record_of_a_file_read_in_several_chunks_is_its_whole_size_and_crc(tmp_path):
    import zlib

    data = bytes(range(256)) * ((1 << 24) // 256) + b'tail'  # 16 MiB and 4 bytes: two chunks
    path = tmp_path / 'big.pth'
    path.write_bytes(data)
    assert checkpoint_files.record_of(str(path)) == {'size': len(data), 'crc32': zlib.crc32(data)}


def test_a_file_is_checked_by_size_then_by_crc_unless_told_not_to(tmp_path):
    path = tmp_path / 'net_g_4.pth'
    path.write_bytes(b'abcd')
    record = checkpoint_files.record_of(str(path))
    assert checkpoint_sets.file_problem(str(path), record) is None
    path.write_bytes(b'abce')  # the same size, other bytes
    assert checkpoint_sets.file_problem(str(path), record) == 'differs from the file that was written (CRC-32)'
    assert checkpoint_sets.file_problem(str(path), record, checksum=False) is None
    path.write_bytes(b'abc')
    assert checkpoint_sets.file_problem(str(path), record, checksum=False) == 'has 3 bytes, the set lists 4'
    assert checkpoint_sets.file_problem(str(tmp_path / 'gone.pth'), record) == 'is missing'


def test_a_set_is_checked_with_or_without_crcs(tmp_path):
    root, opt = experiment(tmp_path)
    save_set(checkpoint_sets.writer(opt), root, 4)
    state_path = str(root / 'training_states' / '4.state')
    network = root / 'models' / 'net_g_4.pth'
    network.write_bytes(bytes(reversed(network.read_bytes())))  # same size
    assert checkpoint_sets.check_set(state_path, checksum=False)[1] == []
    assert checkpoint_sets.check_set(state_path)[1] == [
        (str(network), 'differs from the file that was written (CRC-32)')]


class NotAState:
    pass


def test_a_state_that_is_missing_foreign_or_not_a_state_is_named_so(tmp_path):
    folder = tmp_path / 'experiments' / 'run' / 'training_states'
    folder.mkdir(parents=True)
    missing = str(folder / '4.state')
    assert checkpoint_sets.check_set(missing) == (None, [(missing, 'is missing')])
    for iteration, content in ((8, {'epoch': 0}), (12, [{'iter': 12}])):
        torch.save(content, folder / f'{iteration}.state')
        path = str(folder / f'{iteration}.state')
        assert checkpoint_sets.check_set(path) == (None, [(path, 'is not a training state')])
    torch.save({'iter': 16, 'pickled': NotAState()}, folder / '16.state')  # loads only unpickling code: refused
    state, problems = checkpoint_sets.check_set(str(folder / '16.state'))
    assert state is None and problems[0][1].startswith('cannot be loaded (UnpicklingError: Weights only load failed')
    (folder / '20.state').write_bytes(b'')
    assert checkpoint_sets.check_set(str(folder / '20.state'))[1][0][1].startswith('cannot be loaded (')


def test_every_newer_incomplete_set_is_stepped_over_and_below_excludes_its_iteration(tmp_path):
    root, opt = experiment(tmp_path)
    writer = checkpoint_sets.writer(opt)
    for iteration in (4, 8, 12, 16, 20):
        save_set(writer, root, iteration)
    (root / 'training_states' / '16.state').unlink()  # networks without their state
    for torn in (root / 'models' / 'net_w_12.pth', root / 'models' / 'net_g_20.pth'):
        torn.write_bytes(torn.read_bytes()[:10])
    folder = str(root / 'training_states')
    path, state, stepped = checkpoint_sets.newest_complete_set(folder)
    assert path.endswith('/8.state') and state['iter'] == 8 and state['optimizers'][0]['step'].device.type == 'cpu'
    assert [(i, os.path.basename(f)) for i, f, _ in stepped] == [
        (20, 'net_g_20.pth'), (16, '16_rng.pth'), (16, 'net_g_16.pth'), (16, 'net_w_16.pth'), (12, 'net_w_12.pth')]
    assert checkpoint_sets.newest_complete_set(folder, below=8)[0].endswith('/4.state')
    assert checkpoint_sets.newest_complete_set(folder, below=9)[0].endswith('/8.state')


def test_removed_temporary_files_are_named_by_their_paths(tmp_path):
    root, _ = experiment(tmp_path)
    stray = root / 'models' / 'net_g_8.pth.partial-4242'
    stray.write_bytes(b'cut short')
    assert checkpoint_sets.remove_temporary_files(str(root)) == [str(stray)] and not stray.exists()


@pytest.fixture
def torchrun(monkeypatch):
    """torch.distributed as a torchrun rank sees it; ``broadcast_object_list`` recorded, and on ranks other than 0
    filled with what rank 0 sends (``sent``)."""
    from losses_plugin import resume

    world = {'rank': 0, 'size': 2, 'sent': None, 'broadcasts': []}
    monkeypatch.setattr(resume.dist, 'is_available', lambda: True)
    monkeypatch.setattr(resume.dist, 'is_initialized', lambda: True)
    monkeypatch.setattr(resume.dist, 'get_world_size', lambda: world['size'])
    monkeypatch.setattr(resume.dist, 'get_rank', lambda: world['rank'])

    def broadcast_object_list(objects, src):
        world['broadcasts'].append((list(objects), src))
        if world['rank'] != src:
            objects[:] = world['sent']

    monkeypatch.setattr(resume.dist, 'broadcast_object_list', broadcast_object_list)
    return world


@pytest.mark.parametrize('rank', [0, 1])
def test_under_torchrun_rank_0_chooses_the_set_and_every_rank_resumes_from_it(tmp_path, monkeypatch, torchrun, rank):
    from losses_plugin.resume import _agreed_choice

    root, opt = experiment(tmp_path)
    save_set(checkpoint_sets.writer(opt), root, 4)
    monkeypatch.chdir(tmp_path)  # --auto_resume looks in experiments/<name> of the working directory
    chosen = 'experiments/run/training_states/4.state'
    torchrun.update(rank=rank, sent=[chosen, None])
    path, state = _agreed_choice(opt)
    assert path == chosen and state['iter'] == 4 and opt['path']['resume_state'] == chosen
    assert torchrun['broadcasts'] == [([chosen, None] if rank == 0 else [None, None], 0)]


@pytest.mark.parametrize('rank', [0, 1])
def test_under_torchrun_rank_0s_error_or_fresh_start_is_every_ranks(tmp_path, monkeypatch, torchrun, rank):
    from losses_plugin.resume import _agreed_choice

    root, opt = experiment(tmp_path)
    opt['auto_resume'] = False
    opt['path']['resume_state'] = str(root / 'training_states' / '8.state')
    message = (f"path.resume_state: {root}/training_states/8.state is missing; the newest complete checkpoint there "
               'is none')
    torchrun.update(rank=rank, sent=[None, message])
    with pytest.raises(OptionError, match=f'^{re.escape(message)}$'):
        _agreed_choice(opt)
    assert torchrun['broadcasts'][0][1] == 0
    opt['path']['resume_state'] = None
    torchrun.update(sent=[None, None], broadcasts=[])
    assert _agreed_choice(opt) == (None, None) and torchrun['broadcasts'] == [([None, None], 0)]


def test_one_process_chooses_without_a_broadcast(tmp_path, monkeypatch, torchrun):
    from losses_plugin.resume import _agreed_choice

    root, opt = experiment(tmp_path)
    save_set(checkpoint_sets.writer(opt), root, 4)
    monkeypatch.chdir(tmp_path)
    torchrun['size'] = 1
    assert _agreed_choice(opt)[0] == 'experiments/run/training_states/4.state' and torchrun['broadcasts'] == []


def test_a_state_whose_loading_fails_without_a_message_says_which_error(tmp_path, monkeypatch):
    root, opt = experiment(tmp_path)
    save_set(checkpoint_sets.writer(opt), root, 4)
    monkeypatch.setattr(checkpoint_sets, 'load_state', lambda *a: (_ for _ in ()).throw(EOFError()))
    path = str(root / 'training_states' / '4.state')
    assert checkpoint_sets.check_set(path) == (None, [(path, 'cannot be loaded (EOFError: )')])


def test_in_the_background_the_sets_folders_are_fsynced_then_the_states(tmp_path, monkeypatch):
    root, opt = experiment(tmp_path)
    writer = checkpoint_sets.writer(opt)
    writer.background = True
    folders = []
    fsync_folder = checkpoint_files.fsync_folder
    monkeypatch.setattr(checkpoint_files, 'fsync_folder', lambda f: (folders.append(f), fsync_folder(f))[1])
    save_set(writer, root, 4, networks=('g', ))  # 4_rng.pth, net_g_4.pth, then 4.state
    assert writer.saved(4) == []
    assert folders == [str(root / 'models'), str(root / 'training_states'), str(root / 'training_states')]


def test_an_unexpected_error_in_the_background_reaches_the_training_thread(tmp_path, monkeypatch):
    root, opt = experiment(tmp_path, keep=1)
    writer = checkpoint_sets.writer(opt)
    writer.background = True
    monkeypatch.setattr(writer, '_retain', lambda: 1 / 0)
    save_set(writer, root, 4)
    with pytest.raises(ZeroDivisionError):
        writer.wait()
    writer.wait()  # raised once


def test_networks_saved_outside_a_set_that_cannot_be_put_in_place_are_warned_about(tmp_path, monkeypatch, caplog):
    """A model whose save writes networks only (no training state to commit them) in the background."""
    root, opt = experiment(tmp_path)
    writer = checkpoint_sets.writer(opt)
    writer.background = True
    path = str(root / 'models' / 'net_g_4.pth')
    writer.write(4, {'params': {}}, path)

    def full_disk(temporary, destination):
        raise OSError(errno.ENOSPC, 'No space left on device')

    monkeypatch.setattr(checkpoint_files, 'publish', full_disk)
    assert writer.saved(-1) == []
    assert writer.failed[4] == [f'{path}: No space left on device']
    assert caplog.records[-1].getMessage() == (f'Could not save {path}: [Errno 28] No space left on device; the '
                                               'checkpoint of this iteration will not count; training goes on.')


def test_a_state_is_loaded_onto_the_gpu_the_run_trains_on(monkeypatch):
    from losses_plugin.resume import _device

    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'current_device', lambda: 3)
    assert _device({'num_gpu': 2}) == torch.device('cuda', 3)
    assert _device({'num_gpu': 'auto'}) == torch.device('cuda', 3)
    assert _device({'num_gpu': 0}) == _device({}) == torch.device('cpu')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    assert _device({'num_gpu': 2}) == torch.device('cpu')


def test_the_fault_hook_names_an_action_and_comma_separated_patterns(monkeypatch):
    monkeypatch.setenv(checkpoint_files.FAULT_HOOK, 'ENOSPC:net_w_*.pth,8.state')
    assert checkpoint_files._fault('net_w_8.pth') == checkpoint_files._fault('8.state') == 'ENOSPC'
    assert checkpoint_files._fault('net_g_8.pth') is None
    monkeypatch.setenv(checkpoint_files.FAULT_HOOK, 'block:a:b.pth')  # the first colon ends the action
    assert checkpoint_files._fault('a:b.pth') == 'block'


def test_the_block_hook_holds_the_file_before_its_rename(tmp_path, monkeypatch):
    """What the kill tests use to SIGKILL a run while a given file is being written."""
    monkeypatch.setenv(checkpoint_files.FAULT_HOOK, 'block:net_g_8.pth')
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        raise KeyboardInterrupt  # where a SIGKILL would end the process

    monkeypatch.setattr(checkpoint_files.time, 'sleep', sleep)
    temporary, _ = checkpoint_files.write_temporary({'x': 1}, str(tmp_path / 'net_g_8.pth'))
    with pytest.raises(KeyboardInterrupt):
        checkpoint_files.publish(temporary, str(tmp_path / 'net_g_8.pth'))
    assert slept == [3600] and not os.listdir(tmp_path)  # neither the file nor its temporary one
