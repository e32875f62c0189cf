"""NLSN (Mei, Fan and Zhou, "Image Super-Resolution with Non-Local Sparse Attention", CVPR 2021): an EDSR
backbone with Non-Local Sparse Attention (NLSA) modules, the network the SPLoss paper retrains in its
Table 1 (NLSN, NLSN-SP) and its alpha sweep (Table 3).

NLSA restricts non-local attention to features that fall in the same bucket of a spherical
locality-sensitive hash: the embedded features are rotated randomly, each takes the bucket of its
largest signed coordinate, the sequence is sorted by bucket and cut into chunks, and every query
attends to its own chunk and the two chunks beside it. Several hash rounds run side by side and are
mixed by the softmax of their normalisers. The hyperparameters (4 rounds, chunks of 144, embedding
reduction 4, at most 128 buckets, one module at the start of the body and one after every 8 residual
blocks) are those of the authors' published code (github.com/HarukiYqM/Non-Local-Sparse-Attention).
"""
import torch
import torch.nn.functional as F
from basicsr.archs.arch_util import Upsample
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from losses_plugin.checks import OptionError, check_integer, check_number

DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)
MAX_BUCKETS = 128  # the authors' cap on the number of hash buckets
KEY_NORM_EPS = 5e-5  # the authors' epsilon when keys are L2-normalised


def bucket_count(length: int, chunk_size: int) -> int:
    """Hash buckets for a sequence of ``length``: one per whole chunk (at least one), made even (the
    projections are mirrored, so buckets come in pairs), at most 128 -- the authors' rule."""
    chunks = max(1, length // chunk_size)
    return min(chunks + chunks % 2, MAX_BUCKETS)


def spherical_hash(x: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """Spherical LSH: the bucket of each vector is the argmax of ``[xR, -xR]``.

    Args:
        x (Tensor): (N, L, C) embedded features.
        rotations (Tensor): (C, n_hashes, buckets // 2) random Gaussian projections, one per round.

    Returns:
        (N, n_hashes, L) long bucket indices in ``[0, buckets)``.
    """
    rotated = torch.einsum('nlc,crb->nrlb', x, rotations)
    return torch.cat([rotated, -rotated], dim=-1).argmax(dim=-1)


def _gather_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[n, r, index[n, r, i], :]`` for (N, R, L, C) ``x`` and (N, R, M) ``index``."""
    return x.gather(2, index.unsqueeze(-1).expand(-1, -1, -1, x.shape[-1]))


def _with_neighbours(chunks: torch.Tensor) -> torch.Tensor:
    """(N, R, K, c, C) -> (N, R, K, 3c, C): each chunk followed by the chunks before and after it (cyclic)."""
    return torch.cat([chunks, chunks.roll(1, dims=2), chunks.roll(-1, dims=2)], dim=3)


def non_local_sparse_attention(query: torch.Tensor, value: torch.Tensor, rotations: torch.Tensor,
                               chunk_size: int) -> torch.Tensor:
    """Non-local sparse attention over sequences, all hash rounds at once (NLSN, Sec. 3).

    For each round: hash the queries, sort positions by bucket (ties in position order), repeat the
    last sorted positions so the length divides into chunks, and let every query attend with
    ``softmax(q . k / |k|)`` to the keys of its chunk and of the two adjacent chunks (one embedding
    for queries and keys; the keys L2-normalised, as in the authors' code). The rounds' outputs are
    mixed per position with weights ``softmax_r(logsumexp of round r's scores)``.

    Args:
        query (Tensor): (N, L, C) match embedding (the queries; normalised, also the keys).
        value (Tensor): (N, L, D) assembly embedding.
        rotations (Tensor): (C, n_hashes, buckets // 2) projections for :func:`spherical_hash`.
        chunk_size (int): positions per chunk; a sequence shorter than a chunk is one chunk.

    Returns:
        (N, L, D) attended values, in the input's position order.
    """
    n, length, _ = query.shape
    n_hashes = rotations.shape[1]
    chunk = min(chunk_size, length)
    order = spherical_hash(query.detach(), rotations).sort(dim=-1, stable=True).indices  # (N, R, L)
    undo = order.argsort(dim=-1)
    q = _gather_rows(query.unsqueeze(1).expand(-1, n_hashes, -1, -1), order)
    v = _gather_rows(value.unsqueeze(1).expand(-1, n_hashes, -1, -1), order)
    pad = -length % chunk
    if pad:  # pad < chunk <= length: repeat the last sorted positions, as the authors do
        q = torch.cat([q, q[:, :, -pad:]], dim=2)
        v = torch.cat([v, v[:, :, -pad:]], dim=2)
    q = q.reshape(n, n_hashes, -1, chunk, q.shape[-1])
    v = v.reshape(n, n_hashes, -1, chunk, v.shape[-1])
    keys = _with_neighbours(F.normalize(q, p=2, dim=-1, eps=KEY_NORM_EPS))
    scores = torch.einsum('nrkic,nrkjc->nrkij', q, keys)
    log_norm = scores.logsumexp(dim=-1, keepdim=True)
    out = torch.einsum('nrkij,nrkjd->nrkid', (scores - log_norm).exp(), _with_neighbours(v))
    out = out.reshape(n, n_hashes, -1, out.shape[-1])[:, :, :length]
    log_norm = log_norm.reshape(n, n_hashes, -1)[:, :, :length]
    out = _gather_rows(out, undo)
    round_weights = log_norm.gather(2, undo).softmax(dim=1)
    return (out * round_weights.unsqueeze(-1)).sum(dim=1)


class NonLocalSparseAttention(nn.Module):
    """NLSA block: ``x + res_scale * attention``, with a 3x3 match embedding (``num_feat // reduction``
    channels) and a 1x1 assembly embedding (``num_feat`` channels). New random rotations are drawn at
    every call, in training and at test time alike, as the authors do.

    Args:
        num_feat (int): channels in and out. Default: 256.
        n_hashes (int): hash rounds. Default: 4.
        chunk_size (int): positions per attention chunk. Default: 144.
        reduction (int): channel reduction of the match embedding. Default: 4.
        res_scale (float): scale of the attention branch. Default: 0.1.
    """

    def __init__(self, num_feat: int = 256, n_hashes: int = 4, chunk_size: int = 144, reduction: int = 4,
                 res_scale: float = 0.1):
        super().__init__()
        self.n_hashes, self.chunk_size, self.res_scale = n_hashes, chunk_size, res_scale
        # one-conv Sequentials so the keys are the authors' (conv_match.0.weight, conv_assembly.0.weight)
        self.conv_match = nn.Sequential(nn.Conv2d(num_feat, num_feat // reduction, 3, padding=1))
        self.conv_assembly = nn.Sequential(nn.Conv2d(num_feat, num_feat, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        query = self.conv_match(x).flatten(2).transpose(1, 2)
        value = self.conv_assembly(x).flatten(2).transpose(1, 2)
        buckets = bucket_count(h * w, self.chunk_size)
        rotations = torch.randn(query.shape[-1], self.n_hashes, buckets // 2, dtype=query.dtype, device=x.device)
        out = non_local_sparse_attention(query, value, rotations, self.chunk_size)
        return x + self.res_scale * out.transpose(1, 2).reshape(n, c, h, w)


class ResBlock(nn.Module):
    """EDSR residual block ``x + res_scale * conv(relu(conv(x)))``, keys ``body.0``/``body.2`` as the authors'."""

    def __init__(self, num_feat: int, res_scale: float):
        super().__init__()
        self.res_scale = res_scale
        self.body = nn.Sequential(nn.Conv2d(num_feat, num_feat, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(num_feat, num_feat, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res_scale * self.body(x)


class MeanShift(nn.Module):
    """Adds ``sign * img_range * rgb_mean`` as a fixed 1x1 convolution. ``weight`` and ``bias`` are
    buffers (never trained) under the names of the authors' frozen convolution, so their checkpoints load."""

    def __init__(self, img_range: float, rgb_mean, sign: int):
        super().__init__()
        channels = len(rgb_mean)
        self.register_buffer('weight', torch.eye(channels).view(channels, channels, 1, 1))
        self.register_buffer('bias', sign * img_range * torch.tensor(rgb_mean, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight.to(x.dtype), self.bias.to(x.dtype))


@ARCH_REGISTRY.register()
class NLSN(nn.Module):
    """Non-Local Sparse Network: ``head`` conv, ``body`` = NLSA, then ``num_block`` residual blocks
    with an NLSA after every ``attention_every``-th, then a conv; a global skip; ``tail`` = pixel-shuffle
    upsampler and an output conv. Inputs and outputs are in [0, 1] (BasicSR); inside, the image is
    scaled to [0, img_range] and the mean shifted as in EDSR.

    The state dict has the authors' layout (``sub_mean``, ``head.0``, ``body.<i>...``, ``tail.0.<j>``,
    ``tail.1``, ``add_mean``), so their released NLSN checkpoints (raw state dicts, trained with
    ``rgb_range 1``) load strictly with ``path: {pretrain_network_g: model_x4.pt, param_key_g: ~}`` and
    the default ``img_range: 1``. The attention is computed on the whole image (the authors test with
    ``--chop``, tiling large images); its memory grows linearly with H*W.

    Args:
        num_in_ch (int): input channels; must equal ``num_out_ch`` and ``len(rgb_mean)``. Default: 3.
        num_out_ch (int): output channels. Default: 3.
        num_feat (int): width. Default: 256.
        num_block (int): residual blocks. Default: 32.
        upscale (int): 2, 3, 4 (any power of two works). Default: 4.
        res_scale (float): residual scaling of the blocks and of the attention branches. Default: 0.1.
        n_hashes (int): hash rounds per NLSA. Default: 4.
        chunk_size (int): attention chunk (positions). Default: 144.
        reduction (int): channel reduction of NLSA's match embedding. Default: 4.
        attention_every (int): an NLSA after every this many residual blocks (and one first). Default: 8.
        img_range (float): the range the network sees; 1 for the authors' checkpoints. Default: 1.
        rgb_mean (list[float]): mean subtracted at the input and added back at the output, on [0, 1].
            Default: DIV2K's (0.4488, 0.4371, 0.4040).
    """

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 256, num_block: int = 32,
                 upscale: int = 4, res_scale: float = 0.1, n_hashes: int = 4, chunk_size: int = 144,
                 reduction: int = 4, attention_every: int = 8, img_range: float = 1.,
                 rgb_mean=DIV2K_RGB_MEAN):
        super().__init__()
        for option, value, minimum in (('num_feat', num_feat, 1), ('num_block', num_block, 0),
                                       ('n_hashes', n_hashes, 1), ('chunk_size', chunk_size, 1),
                                       ('reduction', reduction, 1), ('attention_every', attention_every, 1),
                                       ('upscale', upscale, 2)):
            check_integer('NLSN', option, value, minimum)
        if upscale != 3 and upscale & (upscale - 1):
            raise OptionError(f"NLSN: option 'upscale' must be 3 or a power of two, got {upscale!r}")
        if reduction > num_feat:
            raise OptionError(f"NLSN: option 'reduction' ({reduction}) must not exceed num_feat ({num_feat})")
        check_number('NLSN', 'res_scale', res_scale)
        check_number('NLSN', 'img_range', img_range, above=0)
        if not (num_in_ch == num_out_ch == len(rgb_mean)):
            raise OptionError(f"NLSN: options 'num_in_ch' ({num_in_ch}), 'num_out_ch' ({num_out_ch}) and the length "
                              f"of 'rgb_mean' ({len(rgb_mean)}) must agree: the mean is removed and added back")
        self.img_range = img_range

        def attention():
            return NonLocalSparseAttention(num_feat, n_hashes, chunk_size, reduction, res_scale)

        body = [attention()]
        for i in range(num_block):
            body.append(ResBlock(num_feat, res_scale))
            if (i + 1) % attention_every == 0:
                body.append(attention())
        body.append(nn.Conv2d(num_feat, num_feat, 3, padding=1))

        self.sub_mean = MeanShift(img_range, rgb_mean, -1)
        self.head = nn.Sequential(nn.Conv2d(num_in_ch, num_feat, 3, padding=1))
        self.body = nn.Sequential(*body)
        self.tail = nn.Sequential(Upsample(upscale, num_feat), nn.Conv2d(num_feat, num_out_ch, 3, padding=1))
        self.add_mean = MeanShift(img_range, rgb_mean, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.sub_mean(x * self.img_range))
        x = self.tail(self.body(x) + x)
        return self.add_mean(x) / self.img_range
