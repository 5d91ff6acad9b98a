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
