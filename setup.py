"""losses_plugin: five published restoration losses as a BasicSR 1.4.2 plugin.

The architectures live in the top-level folder ``archs/`` and are installed as the
subpackage ``losses_plugin.archs`` so that no top-level ``archs`` module is installed.
``losses_plugin_shim.pth`` (with the tiny module ``losses_plugin_shim``) installs a lazy import hook at interpreter start-up so that a
plain ``import basicsr`` works on current torchvision even before ``import losses_plugin``.
"""
import os
import sys
import sysconfig

from setuptools import find_packages, setup

# data_files are installed relative to the environment's prefix; this puts the .pth file in
# site-packages for regular and editable installs alike (editable wheels drop build_py output).
SITE_PACKAGES = os.path.relpath(sysconfig.get_paths()['purelib'], sys.prefix)

packages = find_packages(include=['losses_plugin', 'losses_plugin.*'])
packages += ['losses_plugin.archs']

setup(
    name='losses_plugin',
    version='0.1.0',
    description='Pixel-aware restoration losses (SPLoss, asymmetric, Zhao SSIM/MS-SSIM/Mix, TLW, FGD) for BasicSR',
    python_requires='>=3.9',
    packages=packages,
    py_modules=['losses_plugin_shim'],
    package_dir={'losses_plugin.archs': 'archs'},
    data_files=[(SITE_PACKAGES, ['losses_plugin_shim.pth'])],
    install_requires=[
        'basicsr==1.4.2',
        'torch',
        'torchvision',
        'opencv-python',
        'lmdb',
        'pyyaml',
        'tb-nightly',
        'numpy',
        'scikit-image',
        'tqdm',
    ],
    extras_require={'test': ['pytest']},
    entry_points={'console_scripts': ['basicsr = losses_plugin.cli:main']},
)
