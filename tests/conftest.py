"""Test configuration: float64, strict dtype promotion, several CPU devices.

Must run before JAX initializes its backends, hence the module-level updates.
"""

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")
try:
    jax.config.update("jax_num_cpu_devices", 4)
except Exception:  # older JAX without the option
    pass


import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_programs():
    """Drop JAX's compiled programs after each test module.

    The suite compiles several hundred XLA programs in one process; one CI
    run died in XLA's compiler (a segmentation fault in
    backend_compile_and_load) about 70% of the way through, in a test that
    passes on its own. Programs are rarely shared between modules, so
    freeing them costs little and keeps the process's compiled-code memory
    bounded.
    """
    yield
    jax.clear_caches()
