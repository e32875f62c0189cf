"""Loading a trained generator for inference, as the scripts that score or picture a run need."""
import os

import torch
from basicsr.archs import build_network


def latest_weights_path(opt):
    """``experiments/<name>/models/net_g_latest.pth``, where BasicSR saves a run's last weights."""
    return os.path.join('experiments', opt['name'], 'models', 'net_g_latest.pth')


def load_trained_network(opt, model_path):
    """``network_g`` of the options with the saved weights (EMA ones when present), in eval mode."""
    net = build_network(dict(opt['network_g']))
    saved = torch.load(model_path, map_location='cpu', weights_only=True)
    net.load_state_dict(saved['params_ema'] if 'params_ema' in saved else saved['params'])
    return net.eval()
