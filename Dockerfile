# The validator's compiled fast path (native/fastrow, Rust; docs/decisions/0014), built as a wheel
# in its own stage so that the runtime image carries no compiler.
FROM python:3.11-slim AS fastrow
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/* \
    && curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
ENV PATH=/root/.cargo/bin:$PATH
COPY native/fastrow /src/fastrow
RUN pip wheel --no-cache-dir --no-deps /src/fastrow -w /wheels

# One image for every vaxflow process (workers, CLI) and, in development, the MESH sandbox.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY vaxflow vaxflow
COPY schemas schemas
COPY topics topics
COPY workers workers
COPY config config
COPY scripts scripts
COPY --from=fastrow /wheels /wheels
RUN pip install --no-cache-dir ".[dev]" /wheels/*.whl && useradd --uid 10001 vaxflow && mkdir -p /var/lib/vaxflow && chown vaxflow /var/lib/vaxflow
USER vaxflow
ENV VAXFLOW_DEV_HOME=/var/lib/vaxflow
ENTRYPOINT ["vaxflow"]
