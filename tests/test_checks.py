"""losses_plugin.checks: the one place option and tensor checks live; what every layer raises."""
import pytest
import torch

from losses_plugin.checks import (OptionError, check_choice, check_existing_file, check_inputs, check_integer,
                                  check_number)
from losses_plugin.losses.ms_ssim_l1_loss import MSSSIML1Loss
from losses_plugin.losses.ms_ssim_loss import MSSSIMLoss
from losses_plugin.losses.sp_loss import SPLoss
from losses_plugin.losses.ssim_loss import SSIMLoss


def test_option_error_is_a_value_error_for_callers_that_catch_those():
    assert issubclass(OptionError, ValueError)


@pytest.mark.parametrize('value, bounds, message', [
    (True, {}, "X: option 'a' must be a number, got True"),
    ('1', {}, "X: option 'a' must be a number, got '1'"),
    (-1, {'minimum': 0}, "X: option 'a' must be >= 0, got -1"),
    (0, {'above': 0}, "X: option 'a' must be > 0, got 0"),
    (-0.5, {'above': 0}, "X: option 'a' must be > 0, got -0.5"),
    (1.5, {'above': 0, 'maximum': 1}, "X: option 'a' must be <= 1, got 1.5"),
])
def test_check_number_names_owner_option_and_bound(value, bounds, message):
    with pytest.raises(OptionError) as error:
        check_number('X', 'a', value, **bounds)
    assert str(error.value) == message


@pytest.mark.parametrize('value, bounds', [(0, {'minimum': 0}), (1e-9, {'above': 0}), (3, {}), (2.5, {'minimum': 2}),
                                          (1, {'maximum': 1})])
def test_check_number_accepts_values_within_bounds(value, bounds):
    check_number('X', 'a', value, **bounds)


@pytest.mark.parametrize('value', [0, 1.0, True, '2', None])
def test_check_integer_refuses_non_integers_bools_and_values_below_the_minimum(value):
    check_integer('X', 'n', 1, 1)
    with pytest.raises(OptionError, match=rf"^X: option 'n' must be an integer >= 1, got {value!r}$"):
        check_integer('X', 'n', value, 1)


def test_check_choice_lists_the_choices():
    check_choice('X', 'b', 'l1', ('l1', 'mse'))
    with pytest.raises(OptionError, match=r"^X: option 'b' must be one of 'l1', 'mse', got 'l2'$"):
        check_choice('X', 'b', 'l2', ('l1', 'mse'))
    check_choice('X', 'flag', False, (True, False))
    with pytest.raises(OptionError, match=r"^X: option 'flag' must be one of True, False, got 1$"):
        check_choice('X', 'flag', 1, (True, False))  # 1 == True in Python, but a YAML 1 is not a yes


def test_check_existing_file(tmp_path):
    (tmp_path / 'w.pth').write_bytes(b'')
    check_existing_file('path.x', str(tmp_path / 'w.pth'), 'hint')
    check_existing_file('path.x', None, 'hint')  # an absent option is not a missing file
    with pytest.raises(OptionError, match=r"^path.x: '.*nope.pth' does not exist \(relative to .*\); train it first$"):
        check_existing_file('path.x', str(tmp_path / 'nope.pth'), 'train it first')


def test_tensor_checks_are_value_errors_not_option_errors():
    x = torch.rand(1, 3, 4, 4)
    with pytest.raises(ValueError) as error:
        check_inputs('L', x, torch.rand(1, 3, 4, 5))
    assert not isinstance(error.value, OptionError)


@pytest.mark.parametrize('loss', [SSIMLoss, MSSSIMLoss, MSSSIML1Loss, SPLoss])
@pytest.mark.parametrize('data_range', [0, -1.0])
def test_losses_refuse_a_data_range_that_is_not_positive(loss, data_range):
    """C1 = (0.01 R)^2 and C2 vanish at R = 0 (SSIM of flat patches is 0/0); SPLoss divides by R."""
    with pytest.raises(OptionError, match=rf"{loss.__name__}: option 'data_range' must be > 0, got {data_range}"):
        loss(data_range=data_range)
