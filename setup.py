"""losses_plugin: five published restoration losses as a BasicSR 1.4.2 plugin.

The architectures live in the top-level folder ``archs/`` and are installed as the
subpackage ``losses_plugin.archs`` so that no top-level ``archs`` module is installed.
``losses_plugin_shim.pth`` (with the tiny module ``losses_plugin_shim``) installs a lazy import hook at interpreter start-up so that a
plain ``import basicsr`` works on current torchvision even before ``import losses_plugin``, and so that the first
lookup of one of our names in a BasicSR registry imports losses_plugin (a project's own train.py needs no import).
"""
import os

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

PTH_FILE = 'losses_plugin_shim.pth'


class BuildPyWithPth(build_py):
    """Puts the start-up hook at the wheel's root, i.e. in site-packages once installed.

    Editable installs do not ship build_py output; scripts/setup_env.sh copies the file there.
    """

    def run(self):
        super().run()
        self.copy_file(PTH_FILE, os.path.join(self.build_lib, PTH_FILE))

    def get_outputs(self, include_bytecode=True):
        return super().get_outputs(include_bytecode) + [os.path.join(self.build_lib, PTH_FILE)]


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
    cmdclass={'build_py': BuildPyWithPth},
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
        'piq>=0.8',  # weight-free IQA metrics (MS-SSIM, IW-SSIM, GMSD, FSIM)
        'lpips>=0.1.4',  # the TLW judge (its VGG backbone weights are supplied by the user)
        'matplotlib',  # the reproduction reports' charts
        'spandrel>=0.4.2',  # published architectures (HAT) wrapped into ARCH_REGISTRY
        'spandrel-extra-arches>=0.2.0',  # MPRNet, wrapped the same way
    ],
    extras_require={'test': ['pytest', 'pytest-xdist', 'kornia>=0.9', 'pytorch-msssim>=1.0', 'mutmut==3.8.1']},
    entry_points={'console_scripts': ['basicsr = losses_plugin.cli:main']},
)
