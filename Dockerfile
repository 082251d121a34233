# The serving image: the package with its serving dependencies only (no torch, no transformers:
# they are the `train` extra) and the committed model, which the package carries (service/models
# links to models/, and the install copies its files). Configured by QINGLANG_* variables.
#   docker build -t qinglang .
#   docker run -p 8000:8000 -v qinglang-data:/var/lib/qinglang qinglang
#   docker run --rm -v qinglang-data:/var/lib/qinglang qinglang qinglang keys create --role publisher
# The console shows the Provisions' articles from QINGLANG_REGULATION_FILE: mount the text there
#   (-v "$PWD/../shared/regulation:/srv/qinglang/regulation:ro"); without it, codes only.
# Another port: QINGLANG_PORT, port in the config file (QINGLANG_CONFIG), or serve --port: the
# HEALTHCHECK probes the address serve wrote to the state folder (serve.address) once it listens.

FROM python:3.11-slim AS build
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
COPY models ./models
# a regular (not editable) install: the venv holds everything the runtime stage needs
RUN /opt/venv/bin/pip install --no-cache-dir .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --create-home --home-dir /srv/qinglang qinglang \
    && mkdir -p /var/lib/qinglang \
    && chown qinglang /var/lib/qinglang
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    QINGLANG_STATE_DIR=/var/lib/qinglang \
    QINGLANG_REGULATION_FILE=/srv/qinglang/regulation/provisions-zh.txt \
    QINGLANG_HOST=0.0.0.0 \
    QINGLANG_PORT=8000
USER qinglang
WORKDIR /srv/qinglang
VOLUME /var/lib/qinglang
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-m", "service.healthcheck"]
# PID 1: serve handles SIGTERM itself from its start, so `docker stop` ends it while it loads too
CMD ["qinglang", "serve"]
