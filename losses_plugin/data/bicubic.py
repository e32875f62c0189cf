"""MATLAB-compatible bicubic downscaling, as BasicSR makes its LR images (``imresize``)."""
import numpy as np
from basicsr.utils.matlab_functions import imresize


def bicubic_downscale(img, scale):
    """uint8 HxWxC image -> uint8 image ``scale`` times smaller (MATLAB ``imresize(img, 1/scale)``, rounded)."""
    lr = imresize(img.astype(np.float32) / 255., 1 / scale)
    return np.clip(np.round(lr * 255.), 0, 255).astype(np.uint8)
