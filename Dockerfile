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
RUN pip install --no-cache-dir ".[dev]" && useradd --uid 10001 vaxflow && mkdir -p /var/lib/vaxflow && chown vaxflow /var/lib/vaxflow
USER vaxflow
ENV VAXFLOW_DEV_HOME=/var/lib/vaxflow
ENTRYPOINT ["vaxflow"]
