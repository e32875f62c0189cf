"""``sum(W * base(pred - target))`` with detached weights W, as one autograd node.

Written out with autograd ops, a weighted L1 builds a node per operation and costs several times
BasicSR's L1Loss. Since W is a constant for autograd, the gradient is known in closed form, so the
forward computes it along with the sum and the backward is a single multiply:

    l1:  G = W * sign(e),  sum = <G, e>              (W |e| = W sign(e) e)
    mse: G = 2 W e,        sum = <G, e> / 2

``weights_fn(target, error, sign)`` builds W (broadcastable to the error) from tensors it may read
but not modify; ``sign`` is None for mse.
"""
import torch

FAST_BASES = ('l1', 'mse')


class WeightedErrorSum(torch.autograd.Function):

    @staticmethod
    def forward(ctx, pred, target, base, weights_fn):
        error = pred - target
        if base == 'l1':
            sign = torch.sign(error)
            grad = sign.mul_(weights_fn(target, error, sign))
            total = torch.dot(grad.reshape(-1), error.reshape(-1))
        else:
            grad = (error * weights_fn(target, error, None)).mul_(2)
            total = torch.dot(grad.reshape(-1), error.reshape(-1)) / 2
        ctx.save_for_backward(grad)
        return total

    @staticmethod
    def backward(ctx, grad_output):
        (grad,) = ctx.saved_tensors
        grad_pred = grad * grad_output
        grad_target = -grad_pred if ctx.needs_input_grad[1] else None
        return grad_pred, grad_target, None, None


def weighted_error_sum(pred, target, base, weights_fn):
    """Returns ``sum(W * base(pred - target))``; differentiable in pred and target, not through W."""
    return WeightedErrorSum.apply(pred, target, base, weights_fn)
