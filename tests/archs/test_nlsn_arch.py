"""NLSN and its Non-Local Sparse Attention: the paper's hyperparameters and the authors' state-dict layout,
shapes at x2/x3/x4 for any H*W, dense softmax attention where every query sees every key, a
loop-by-loop reading of the authors' algorithm, batch independence, gradients, checkpoint loading."""
import inspect

import pytest
import torch
import torch.nn.functional as F
from basicsr.archs import build_network
from basicsr.models.base_model import BaseModel

from losses_plugin.archs.nlsn_arch import (NLSN, NonLocalSparseAttention, ResBlock, bucket_count,
                                           non_local_sparse_attention, spherical_hash)

TINY = {'type': 'NLSN', 'num_feat': 8, 'num_block': 2, 'attention_every': 1, 'chunk_size': 5, 'n_hashes': 2}


def rotations(dim, n_hashes, length, chunk_size, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(dim, n_hashes, bucket_count(length, chunk_size) // 2, generator=generator, dtype=torch.float64)


def loop_attention(query, value, rots, chunk_size, eps=5e-5):
    """The authors' algorithm spelt out per image, round and chunk (slow, obvious); ``eps``: of the keys'
    normalisation."""
    n, length, _ = query.shape
    chunk = min(chunk_size, length)
    result = torch.zeros(n, length, value.shape[-1], dtype=query.dtype)
    for b in range(n):
        outs, norms = [], []
        for r in range(rots.shape[1]):
            projected = query[b] @ rots[:, r]
            codes = torch.cat([projected, -projected], dim=-1).argmax(dim=-1)
            order = sorted(range(length), key=lambda i: (codes[i].item(), i))
            order += order[len(order) - (-length % chunk):] if length % chunk else []
            q, v = query[b, order], value[b, order]
            chunks = len(order) // chunk
            out, norm = torch.zeros(length, value.shape[-1], dtype=query.dtype), torch.zeros(length, dtype=query.dtype)
            for k in range(chunks):
                near = [k, (k - 1) % chunks, (k + 1) % chunks]
                keys = torch.cat([F.normalize(q[j * chunk:(j + 1) * chunk], dim=-1, eps=eps) for j in near])
                values = torch.cat([v[j * chunk:(j + 1) * chunk] for j in near])
                for i in range(k * chunk, min((k + 1) * chunk, length)):  # padded queries are dropped
                    scores = keys @ q[i]
                    out[order[i]] = torch.softmax(scores, dim=0) @ values
                    norm[order[i]] = torch.logsumexp(scores, dim=0)
            outs.append(out)
            norms.append(norm)
        weights = torch.softmax(torch.stack(norms), dim=0)
        result[b] = (torch.stack(outs) * weights[..., None]).sum(dim=0)
    return result


def test_default_hyperparameters_and_layout_are_the_papers():
    """32 blocks of 256 features, res_scale 0.1, 4 hash rounds, chunks of 144, reduction 4, an NLSA first and
    after every 8 blocks, DIV2K mean, [0, 1] range: the authors' NLSN, with their state-dict keys."""
    defaults = {k: p.default for k, p in inspect.signature(NLSN).parameters.items()}
    assert defaults == {'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 256, 'num_block': 32, 'upscale': 4,
                        'res_scale': 0.1, 'n_hashes': 4, 'chunk_size': 144, 'reduction': 4, 'attention_every': 8,
                        'img_range': 1., 'rgb_mean': (0.4488, 0.4371, 0.4040)}
    with torch.device('meta'):
        net = NLSN()
    kinds = [type(m).__name__ for m in net.body]
    assert [i for i, k in enumerate(kinds) if k == 'NonLocalSparseAttention'] == [0, 9, 18, 27, 36]
    assert kinds.count('ResBlock') == 32 and kinds[-1] == 'Conv2d' and len(kinds) == 38
    attention = net.body[0]
    assert (attention.n_hashes, attention.chunk_size, attention.res_scale, net.body[1].res_scale) == (4, 144, 0.1, 0.1)
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert shapes['body.0.conv_match.0.weight'] == (64, 256, 3, 3)
    assert shapes['body.0.conv_assembly.0.weight'] == (256, 256, 1, 1)
    assert shapes['body.1.body.0.weight'] == shapes['body.1.body.2.weight'] == (256, 256, 3, 3)
    assert shapes['tail.0.0.weight'] == shapes['tail.0.2.weight'] == (1024, 256, 3, 3)
    assert [k for k in shapes if not k.startswith('body.')] == [
        'sub_mean.weight', 'sub_mean.bias', 'head.0.weight', 'head.0.bias', 'tail.0.0.weight', 'tail.0.0.bias',
        'tail.0.2.weight', 'tail.0.2.bias', 'tail.1.weight', 'tail.1.bias', 'add_mean.weight', 'add_mean.bias']
    assert sum(v.numel() for k, v in net.state_dict().items() if 'mean' not in k) == 44_156_483  # the paper's 44.16M
    assert bucket_count(48 * 48, 144) == 16 and bucket_count(17 * 144, 144) == 18 and bucket_count(10 ** 6, 144) == 128


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_output_shapes_for_any_size(scale):
    net = build_network(dict(TINY, upscale=scale))
    for h, w in ((7, 9), (2, 2), (5, 4)):  # 63 (pads to chunks of 5), 4 (< one chunk), 20 (four chunks)
        assert net(torch.rand(2, 3, h, w)).shape == (2, 3, h * scale, w * scale)


@pytest.mark.parametrize('length,chunk', [(24, 8), (6, 6), (4, 9)])
def test_attention_is_dense_softmax_attention_when_every_query_sees_every_key(length, chunk):
    """Three chunks (own + both neighbours), or one chunk, cover every key once per round (one chunk: three
    times, which softmax does not see), so every round and their mixture is plain non-local attention with
    normalised keys -- whatever the hashes, provided the sort is undone at the right positions."""
    torch.manual_seed(0)
    query, value = torch.randn(2, length, 4, dtype=torch.float64), torch.randn(2, length, 3, dtype=torch.float64)
    out = non_local_sparse_attention(query, value, rotations(4, 3, length, chunk), chunk)
    dense = torch.softmax(query @ F.normalize(query, dim=-1).transpose(1, 2), dim=-1) @ value
    assert torch.allclose(out, dense)


@pytest.mark.parametrize('length,chunk,n_hashes', [(23, 5, 3), (40, 4, 2), (12, 5, 1)])
def test_attention_matches_the_authors_algorithm_loop_by_loop(length, chunk, n_hashes):
    """Sparse cases: buckets, stable sort, padding by repeating the last sorted positions, adjacent chunks,
    the rounds mixed by their log-normalisers."""
    torch.manual_seed(1)
    query, value = torch.randn(2, length, 4, dtype=torch.float64), torch.randn(2, length, 3, dtype=torch.float64)
    rots = rotations(4, n_hashes, length, chunk)
    out = non_local_sparse_attention(query, value, rots, chunk)
    assert torch.allclose(out, loop_attention(query, value, rots, chunk))
    dense = torch.softmax(query @ F.normalize(query, dim=-1).transpose(1, 2), dim=-1) @ value
    assert not torch.allclose(out, dense, atol=1e-3)  # sparse indeed
    codes = spherical_hash(query, rots)
    assert codes.shape == (2, n_hashes, length) and codes.max() < 2 * rots.shape[-1]


def test_keys_shorter_than_the_authors_epsilon_are_divided_by_it():
    """F.normalize's eps is the authors' 5e-5: a key of norm 1e-6 becomes 0.02 long, not a unit vector."""
    torch.manual_seed(1)
    query, value = torch.randn(1, 12, 4, dtype=torch.float64), torch.randn(1, 12, 3, dtype=torch.float64)
    query[0, 3] = 1e-6 * F.normalize(query[0, 3], dim=-1)
    rots = rotations(4, 2, 12, 4)
    out = non_local_sparse_attention(query, value, rots, 4)
    assert torch.allclose(out, loop_attention(query, value, rots, 4))
    assert not torch.allclose(out, loop_attention(query, value, rots, 4, eps=1e-12))  # unit keys: another result


def test_batch_items_are_independent():
    torch.manual_seed(2)
    query, value = torch.randn(3, 30, 4, dtype=torch.float64), torch.randn(3, 30, 3, dtype=torch.float64)
    rots = rotations(4, 2, 30, 4)
    out = non_local_sparse_attention(query, value, rots, 4)
    for i in range(3):
        assert torch.allclose(out[i:i + 1], non_local_sparse_attention(query[i:i + 1], value[i:i + 1], rots, 4))


def test_attention_block_gradients_float64():
    torch.manual_seed(3)
    block = NonLocalSparseAttention(num_feat=4, n_hashes=2, chunk_size=5, reduction=2, res_scale=0.5).double()
    x = torch.randn(1, 4, 3, 4, dtype=torch.float64, requires_grad=True)  # 12 positions: three chunks after padding

    def seeded(inp):  # the same random rotations at every call
        torch.manual_seed(0)
        return block(inp)

    assert torch.autograd.gradcheck(seeded, (x, ), eps=1e-6, atol=1e-5)


def test_attention_block_defaults_are_the_authors():
    """The block alone, as NLSN builds it by default: 4 rounds, chunks of 144, a match embedding of 256 / 4
    channels, res_scale 0.1."""
    block = NonLocalSparseAttention()
    assert (block.n_hashes, block.chunk_size, block.res_scale) == (4, 144, 0.1)
    assert block.conv_match[0].weight.shape == (64, 256, 3, 3)
    assert block.conv_assembly[0].weight.shape == (256, 256, 1, 1)


def test_block_is_residual_with_res_scale():
    torch.manual_seed(4)
    block = NonLocalSparseAttention(num_feat=4, n_hashes=2, chunk_size=4, reduction=2, res_scale=0.0)
    x = torch.randn(2, 4, 5, 5)
    assert torch.equal(block(x), x)


def test_random_init_checkpoint_loads_strictly_through_basicsr(tmp_path):
    torch.manual_seed(5)
    saved = build_network(dict(TINY, upscale=3))
    torch.save({'params': saved.state_dict()}, tmp_path / 'net_g.pth')
    torch.save(saved.state_dict(), tmp_path / 'authors_raw.pt')  # the authors release raw state dicts
    loader = BaseModel.__new__(BaseModel)
    for path, key in (('net_g.pth', 'params'), ('authors_raw.pt', None)):
        torch.manual_seed(6)
        net = build_network(dict(TINY, upscale=3))
        loader.load_network(net, str(tmp_path / path), strict=True, param_key=key)
        assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), saved.state_dict().values()))
    x = torch.rand(1, 3, 6, 7)
    torch.manual_seed(7)
    expected = saved(x)
    torch.manual_seed(7)
    assert torch.equal(net(x), expected)


def test_attention_block_adds_res_scale_times_the_attention_output():
    """x + res_scale * attention(conv_match(x), conv_assembly(x)), with the rotations the block draws."""
    block = NonLocalSparseAttention(num_feat=4, n_hashes=2, chunk_size=4, reduction=2, res_scale=0.3).double()
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    torch.manual_seed(4)
    out = block(x)
    torch.manual_seed(4)
    rotations = torch.randn(2, 2, bucket_count(25, 4) // 2, dtype=torch.float64)
    query, value = (conv(x).flatten(2).transpose(1, 2) for conv in (block.conv_match, block.conv_assembly))
    attention = non_local_sparse_attention(query, value, rotations, 4).transpose(1, 2).reshape(2, 4, 5, 5)
    assert torch.allclose(out, x + 0.3 * attention, rtol=0, atol=1e-12)


def test_residual_block_and_global_skip_add():
    """ResBlock: x + res_scale * conv(relu(conv(x))); NLSN: tail(body(head) + head), as EDSR."""
    torch.manual_seed(0)
    net = build_network(dict(TINY, upscale=2)).double()
    block = next(m for m in net.body if isinstance(m, ResBlock))
    x = torch.randn(1, 8, 4, 4, dtype=torch.float64)
    conv1, conv2 = (m for m in block.body if isinstance(m, torch.nn.Conv2d))
    image = torch.rand(1, 3, 4, 4, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(block(x), x + 0.1 * conv2(F.relu(conv1(x))), rtol=0, atol=1e-12)
        head = net.head(net.sub_mean(image))
        torch.manual_seed(1)  # the attention blocks' rotations
        expected = net.add_mean(net.tail(net.body(head) + head))
        torch.manual_seed(1)
        assert torch.allclose(net(image), expected, rtol=0, atol=1e-12)
    scaled = build_network(dict(TINY, upscale=2, res_scale=0.5))
    assert sorted({type(m).__name__: m.res_scale for m in scaled.body if hasattr(m, 'res_scale')}.items()) == [
        ('NonLocalSparseAttention', 0.5), ('ResBlock', 0.5)]


def test_mean_shift_and_range_round_trip():
    """The head sees ``x * range - range * mean``; the tail's output comes back as ``(. + range * mean) / range``,
    so a zero output conv leaves exactly the mean."""
    net = build_network(dict(TINY, upscale=2, img_range=255.))
    for p in net.tail[1].parameters():
        torch.nn.init.zeros_(p)
    seen = []
    net.head.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    x = torch.rand(1, 3, 4, 4)
    out = net(x)
    mean = torch.tensor([0.4488, 0.4371, 0.4040]).view(1, 3, 1, 1)
    assert torch.allclose(seen[0], 255 * (x - mean), atol=1e-4)
    assert torch.allclose(out, mean.expand_as(out))


@pytest.mark.parametrize('option,value,message', [('upscale', 5, "'upscale' must be 3 or a power of two"),
                                                  ('chunk_size', 0, "'chunk_size' must be an integer >= 1"),
                                                  ('n_hashes', 1.5, "'n_hashes' must be an integer"),
                                                  ('reduction', 16, "'reduction' \\(16\\) must not exceed"),
                                                  ('num_in_ch', 1, "must agree")])
def test_bad_options_name_the_option(option, value, message):
    with pytest.raises(ValueError, match=f'NLSN: .*{message}'):
        build_network(dict(TINY, **{option: value}))
