"""Any registered SR backbone plus the features entering one of its modules, read by a forward hook.

UDL's uncertainty head and FGD's bin head sit on the backbone's last features (the input of
``conv_last`` in BasicSR's EDSR, RCAN, MSRResNet, RRDBNet and SwinIR, and in HAT) without copying the backbone.
"""
import copy

from torch import nn

from losses_plugin.checks import OptionError


def keep_input(module: nn.Module, args: tuple) -> None:
    """Forward pre-hook: keeps the input on the module called, so that each copy of a network (DataParallel's
    replicas share their hooks) reads its own; a plain function, so networks deepcopy, pickle and compile.

    Args:
        module (nn.Module): the hooked module, or the replica of it that is being called.
        args (tuple): its positional inputs; the first is kept as ``module.kept_input``.
    """
    module.kept_input = args[0]


class BackboneWithFeatures(nn.Module):
    """``forward(x) -> (backbone(x), features entering `feature_module`)``.

    Args:
        backbone (dict): options of a registered architecture, e.g. ``{type: EDSR, num_feat: 64, ...}``.
        feature_module (str): dotted name of the module whose input is read. Default: 'conv_last'.
        owner (str): the wrapping architecture's name, for error messages.
    """

    def __init__(self, backbone, feature_module='conv_last', owner='BackboneWithFeatures'):
        super().__init__()
        from basicsr.archs import build_network

        if not isinstance(backbone, dict) or 'type' not in backbone:
            raise OptionError(f"{owner}: option 'backbone' must be a network's options with a 'type', got {backbone!r}")
        self.backbone = build_network(copy.deepcopy(backbone))
        modules = dict(self.backbone.named_modules())
        if feature_module not in modules or not feature_module:
            convs = [name for name, m in modules.items() if isinstance(m, nn.Conv2d)]
            raise OptionError(f"{owner}: {backbone['type']} has no module '{feature_module}' (option feature_module); "
                             f"its last convolutions: {', '.join(convs[-4:])}")
        self.feature_module = feature_module
        module = modules[feature_module]
        self.feature_channels = getattr(module, 'in_channels', None)
        if self.feature_channels is None:  # the heads on the features are sized by it
            raise OptionError(f"{owner}: feature_module '{feature_module}' must be a convolution")
        module.register_forward_pre_hook(keep_input)

    def forward(self, x):
        # The module this forward calls, not the one hooked at construction: under DataParallel each replica
        # runs its own copy of the backbone (in its own thread), and the hook stores on the module it runs on.
        module = self.backbone.get_submodule(self.feature_module)
        module.kept_input = None
        out = self.backbone(x)
        features, module.kept_input = module.kept_input, None
        if features is None:
            raise RuntimeError(f'{type(self.backbone).__name__} never called {self.feature_module} in its forward')
        return out, self.image_part(features, x)

    def image_part(self, features, x):
        """The part of ``features`` that covers the image ``x``.

        A backbone with an ``input_multiple`` (HAT: its window size) pads its input at the bottom and right
        to a multiple of it and crops its output, so its features cover the padded image at some integer
        scale r (1 before the upsampler, the upscale after it); the image's own part is their top-left
        r*H x r*W. Other backbones' features are returned as they are.
        """
        multiple = getattr(self.backbone, 'input_multiple', 1)
        height, width = x.shape[-2:]
        padded_height, padded_width = -(-height // multiple) * multiple, -(-width // multiple) * multiple
        if (padded_height, padded_width) == (height, width):
            return features
        scale = features.shape[-2] // padded_height
        if features.shape[-2:] != (scale * padded_height, scale * padded_width):
            raise RuntimeError(f'{type(self.backbone).__name__}: the features entering {self.feature_module} '
                               f'({tuple(features.shape[-2:])}) are not a multiple of its padded input '
                               f'({padded_height}, {padded_width})')
        return features[..., :scale * height, :scale * width]
