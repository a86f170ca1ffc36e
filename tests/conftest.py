"""Test configuration: Triton's interpreter on machines without CUDA, hypothesis profiles."""
import os
import tempfile

# Must be set before any Triton kernel module is imported.
try:
    import torch

    _has_cuda = torch.cuda.is_available()
except ImportError:  # pragma: no cover
    _has_cuda = False
if not _has_cuda:
    os.environ.setdefault("TRITON_INTERPRET", "1")
# Generated modules go to a fresh cache per test session unless one is given.
os.environ.setdefault("OPTLANG_CACHE_DIR", tempfile.mkdtemp(prefix="optlang-test-cache-"))

# The tests use small tensors: one thread avoids oversubscription (much faster on 2 cores).
if not _has_cuda:
    torch.set_num_threads(1)

from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile(
    "ci", derandomize=True, deadline=None, max_examples=15, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", deadline=None, max_examples=50, suppress_health_check=[HealthCheck.too_slow])
# HYPOTHESIS_PROFILE=fuzz: 10,000 cases per property (the fuzz tests of test_errors and test_hostile).
settings.register_profile("fuzz", deadline=None, max_examples=10_000, suppress_health_check=list(HealthCheck))
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
