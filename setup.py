"""The compiled part of the package: the ingest writer's row builders in C.

- observai/telemetry/otlp/_wire.c: OTLP protobuf requests straight to binary COPY rows (and, json_pb.h, OTLP/JSON
  requests to protobuf);
- observai/telemetry/_rows.c: decoded records (any format) to binary COPY rows;
- observai/metrics/_sketch_text.c: the roll-up job's sketch entries to their JSON text.

Everything else is in pyproject.toml. `pip install -e .` builds them in place; so does `make install`
(and `python setup.py build_ext --inplace`). Without them, the writer does the same work in Python.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "observai.telemetry.otlp._wire",
            sources=["layers/common/observai/telemetry/otlp/_wire.c"],
            depends=[
                "layers/common/observai/telemetry/copy_buffer.h",
                "layers/common/observai/telemetry/otlp/json_pb.h",
            ],
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Werror"],
        ),
        Extension(
            "observai.telemetry._rows",
            sources=["layers/common/observai/telemetry/_rows.c"],
            depends=["layers/common/observai/telemetry/copy_buffer.h"],
            extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Werror"],
        ),
        Extension(
            "observai.metrics._sketch_text",
            sources=["layers/common/observai/metrics/_sketch_text.c"],
            depends=["layers/common/observai/telemetry/copy_buffer.h"],
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Werror"],
        ),
    ]
)
