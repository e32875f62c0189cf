"""HAT (Chen et al., CVPR 2023, "Activating More Pixels in Image Super-Resolution Transformer"), the
network of section IV-C / Table II of ``trainable_loss_weights_tlw.txt``, from spandrel's maintained
implementation, registered in BasicSR's ARCH_REGISTRY.

The parameter names are the HAT authors' (XPixelGroup/HAT), so their released checkpoints
(``HAT_SRx4.pth``, ``HAT_SRx4_ImageNet-pretrain.pth``) load with
``path: {pretrain_network_g: ..., param_key_g: params_ema}``.
"""
from basicsr.utils.registry import ARCH_REGISTRY
from spandrel.architectures.HAT import HAT as SpandrelHAT

from losses_plugin.checks import OptionError, check_choice, check_integer


@ARCH_REGISTRY.register()
class HAT(SpandrelHAT):
    """HAT with the defaults of the authors' HAT-SR x4 (``options/test/HAT_SRx4.yml``: 20.8 M parameters).

    ``forward(x)`` pads x at the bottom and right to a multiple of ``window_size`` (reflection, as the
    authors' HATModel does before testing) and crops the output back to ``upscale`` x the input, so
    BasicSR's validation can feed whole images of any size (more than ``window_size / 2`` pixels a side,
    the reflection's limit).

    Args:
        upscale (int): scale factor (2, 3, 4, 8). Default: 4.
        in_chans (int): image channels (in and out). Default: 3.
        img_size (int): the training patch size the authors' code was built for (LR). Default: 64.
        window_size (int): attention window; inputs are padded to a multiple of it. Default: 16.
        compress_ratio (int): channel compression of the convolution block (CAB). Default: 3.
        squeeze_factor (int): channel-attention squeeze factor. Default: 30.
        conv_scale (float): weight of the CAB branch. Default: 0.01.
        overlap_ratio (float): window overlap of the overlapping cross-attention. Default: 0.5.
        img_range (float): 1. or 255. Default: 1.
        depths (list[int]): blocks per residual hybrid attention group. Default: [6] * 6.
        embed_dim (int): feature width. Default: 180.
        num_heads (list[int]): attention heads per group. Default: [6] * 6.
        mlp_ratio (float): MLP width / embed_dim. Default: 2.
        upsampler (str): 'pixelshuffle' (the only one the authors' SR models use). Default: 'pixelshuffle'.
        resi_connection (str): '1conv' | 'identity'. Default: '1conv'.
        num_feat (int): width of the upsampler (HR features). Default: 64.
        patch_size (int): patch-embedding size, as the authors'. Default: 1.
        qkv_bias (bool): biases of the query, key and value projections. Default: True.
        qk_scale (float, optional): attention scale; None: head_dim ** -0.5. Default: None.
        drop_rate (float): dropout after the patch embedding. Default: 0.
        attn_drop_rate (float): attention dropout. Default: 0.
        drop_path_rate (float): stochastic-depth rate. Default: 0.1.
        ape (bool): absolute position embedding. Default: False.
        patch_norm (bool): normalise after the patch embedding. Default: True.
        use_checkpoint (bool): gradient checkpointing. Default: False.
    """

    def __init__(self, upscale=4, in_chans=3, img_size=64, window_size=16, compress_ratio=3, squeeze_factor=30,
                 conv_scale=0.01, overlap_ratio=0.5, img_range=1., depths=(6, 6, 6, 6, 6, 6), embed_dim=180,
                 num_heads=(6, 6, 6, 6, 6, 6), mlp_ratio=2., upsampler='pixelshuffle', resi_connection='1conv',
                 num_feat=64, patch_size=1, qkv_bias=True, qk_scale=None, drop_rate=0., attn_drop_rate=0.,
                 drop_path_rate=0.1, ape=False, patch_norm=True, use_checkpoint=False):
        check_choice('HAT', 'upsampler', upsampler, ('pixelshuffle', ))
        check_choice('HAT', 'resi_connection', resi_connection, ('1conv', 'identity'))
        for option, value in (('window_size', window_size), ('embed_dim', embed_dim), ('upscale', upscale)):
            check_integer('HAT', option, value, minimum=1)
        if len(depths) != len(num_heads):
            raise OptionError(f"HAT: options 'depths' {list(depths)} and 'num_heads' {list(num_heads)} must have "
                              'one entry per residual group each')
        if any(embed_dim % heads for heads in num_heads):
            raise OptionError(f"HAT: option 'embed_dim' ({embed_dim}) must be divisible by every 'num_heads' "
                              f'({list(num_heads)})')
        super().__init__(img_size=img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim,
                         depths=list(depths), num_heads=list(num_heads), window_size=window_size,
                         compress_ratio=compress_ratio, squeeze_factor=squeeze_factor, conv_scale=conv_scale,
                         overlap_ratio=overlap_ratio, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, qk_scale=qk_scale,
                         drop_rate=drop_rate, attn_drop_rate=attn_drop_rate, drop_path_rate=drop_path_rate,
                         ape=ape, patch_norm=patch_norm, use_checkpoint=use_checkpoint, upscale=upscale,
                         img_range=img_range, upsampler=upsampler, resi_connection=resi_connection,
                         num_feat=num_feat)

    @property
    def input_multiple(self):
        """Inputs are padded to a multiple of this (the window size); read by BackboneWithFeatures."""
        return self.window_size
