"""tests/helpers: the skip marker for GPU-only tests."""

from helpers.run_if import run_if


def test_run_if_skips_only_without_enough_gpus():
    assert run_if(min_gpus=0).args == (False,)
    marker = run_if(min_gpus=10**6)
    assert marker.args == (True,) and marker.kwargs["reason"].startswith("needs 1000000 CUDA GPU(s), found ")
