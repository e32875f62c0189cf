"""The image pair every metric here starts from, prepared as BasicSR's own metrics prepare it."""
import numpy as np
from basicsr.metrics.metric_util import reorder_image, to_y_channel


def prepared_pair(img, img2, crop_border, input_order='HWC', test_y_channel=False, name='metric'):
    """Two float64 HWC arrays in [0, 255]: reordered, ``crop_border`` pixels cut, Y channel if asked."""
    if img.shape != img2.shape:
        raise ValueError(f'{name}: image shapes differ: {img.shape} and {img2.shape}')
    pair = []
    for image in (img, img2):
        image = reorder_image(image, input_order=input_order).astype(np.float64)
        if crop_border:
            image = image[crop_border:-crop_border, crop_border:-crop_border, ...]
        pair.append(to_y_channel(image).astype(np.float64) if test_y_channel else image)
    return pair
