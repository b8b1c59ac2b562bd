# Every Python package comes from the lock (requirements/, decision 0015) with its hash checked; the
# runtime image gets requirements/runtime.txt only: no test or lint tools, no compiler.

# Wheels of vaxflow and of the validator's compiled fast path (native/fastrow, Rust;
# docs/decisions/0014), built with the locked build back-ends.
FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/* \
    && curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
ENV PATH=/root/.cargo/bin:$PATH
WORKDIR /src
COPY requirements requirements
RUN pip install --no-cache-dir --require-hashes -r requirements/build.txt
COPY native/fastrow native/fastrow
RUN pip wheel --no-cache-dir --no-deps --no-build-isolation native/fastrow -w /wheels
COPY pyproject.toml README.md ./
COPY vaxflow vaxflow
COPY schemas schemas
COPY topics topics
COPY workers workers
RUN pip wheel --no-cache-dir --no-deps --no-build-isolation . -w /wheels

# One image for every vaxflow process (workers, CLI). The MESH sandbox of docker-compose.yml is
# a development tool and runs from its own image.
FROM python:3.11-slim AS runtime
WORKDIR /app
COPY requirements/runtime.txt /tmp/runtime.txt
RUN pip install --no-cache-dir --require-hashes -r /tmp/runtime.txt && rm /tmp/runtime.txt
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-deps /wheels/*.whl && rm -rf /wheels \
    && useradd --uid 10001 vaxflow && mkdir -p /var/lib/vaxflow && chown vaxflow /var/lib/vaxflow
COPY config config
COPY scripts scripts
USER vaxflow
ENV VAXFLOW_DEV_HOME=/var/lib/vaxflow
ENTRYPOINT ["vaxflow"]

# Development tools on top (the MESH sandbox and the NHS England simulator of docker-compose.yml):
# `docker build --target dev`. Never the image a worker runs in production.
FROM runtime AS dev
USER root
COPY requirements/dev.txt /tmp/dev.txt
RUN pip install --no-cache-dir --require-hashes -r /tmp/dev.txt && rm /tmp/dev.txt
USER vaxflow

# The default target: the runtime image.
FROM runtime
