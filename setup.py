"""The compiled part of the package: the OTLP fast path (observai/telemetry/otlp/_wire.c).

Everything else is in pyproject.toml. `pip install -e .` builds it in place; so does `make install`
(and `python setup.py build_ext --inplace`). Without it, the ingest function decodes OTLP in Python.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "observai.telemetry.otlp._wire",
            sources=["layers/common/observai/telemetry/otlp/_wire.c"],
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Werror"],
        )
    ]
)
