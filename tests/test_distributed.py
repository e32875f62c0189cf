"""`torchrun --nproc_per_node=2 -m losses_plugin train ... --launcher pytorch` on CPU (gloo DDP)."""
import hashlib
import re
from pathlib import Path

import pytest
import torch
from conftest import PYTHON, free_port, load_params, run_cli, tiny_options, training_log, write_options

pytestmark = pytest.mark.slow


def digest(state_dict):
    h = hashlib.sha256()
    for name, tensor in state_dict.items():
        h.update(name.encode())
        h.update(tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def test_two_ranks_train_with_ddp_and_end_identical(demo_data, tmp_path):
    opt = tiny_options(demo_data, 'ddp', total_iter=6)
    opt['logger']['save_checkpoint_freq'] = 3
    torchrun = [str(Path(PYTHON).parent / 'torchrun'), '--nproc_per_node=2', f'--master_port={free_port()}']
    result = run_cli(['train', '-opt', write_options(opt, tmp_path / 'ddp.yml'), '--launcher', 'pytorch'],
                     cwd=tmp_path, launcher=torchrun)

    experiment = tmp_path / 'experiments' / 'ddp'
    log = training_log(experiment)
    assert 'World size: 2' in log and 'iter:       6' in log
    # Each rank hashed its own parameters after training; rank 0 logged whether all agree.
    match = re.search(r'net_g parameters identical on all 2 ranks \(sha256 ([0-9a-f]{64})\)', log)
    assert match, f'no agreement line in the log:\n{log}\n{result.stderr[-3000:]}'
    assert match.group(1) == digest(load_params(experiment / 'models' / 'net_g_latest.pth'))
    # both ranks' generator states were gathered into the checkpoint
    rng = torch.load(experiment / 'training_states' / '3_rng.pth', weights_only=True)
    assert len(rng['ranks']) == 2 and not torch.equal(rng['ranks'][0]['torch'], rng['ranks'][1]['torch'])
