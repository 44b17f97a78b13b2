# syntax=docker/dockerfile:1
# An application image with the apm probe inside (docs/install.md, "Docker"). From the
# repository's top directory:
#
#   docker build -f deploy/docker/Dockerfile.app -t myapp .
#   docker run -d -p 8000:8000 -v /run/apm:/run/apm myapp
#
# The host (or the Kubernetes node) runs apm-agent, whose probe socket is
# /run/apm/probe.sock; mounting /run/apm gives the app's probe that socket. The app here
# is deploy/docker/example_app.py, a small WSGI service that leaks on purpose: put yours
# in its place (the COPY and the CMD below).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# The probe's wheel, compiled with this image's own Python and its headers, from the
# sources, with no package index: setuptools comes with the image and setup.py makes the
# wheel itself where the `wheel` package is absent. The extension needs CPython 3.11 or
# 3.12; with another Python the wheel holds the pure-Python probe (tracemalloc mode).
FROM ${PYTHON_IMAGE} AS probe
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
COPY agent/python /src/apm-probe
RUN python -m pip wheel --no-index --no-build-isolation --no-deps --wheel-dir /wheels /src/apm-probe

# The app: a virtualenv holding the probe (and, in a real image, the app's requirements).
FROM ${PYTHON_IMAGE}
RUN python -m venv /opt/venv
COPY --from=probe /wheels /wheels
RUN /opt/venv/bin/python -m pip install --no-index /wheels/apm_probe-*.whl && rm -rf /wheels
COPY deploy/docker/example_app.py /app/app.py
WORKDIR /app
# Any user may connect to the agent's socket (its probe-socket-mode is 0666 by default).
RUN useradd --system --uid 10001 --no-create-home app
USER 10001
ENV PATH=/opt/venv/bin:$PATH \
    APM_PROBE_SOCKET=/run/apm/probe.sock \
    PYTHONUNBUFFERED=1
EXPOSE 8000
# apm-run starts the command with the probe inside; without the agent's socket the probe
# retries quietly and the app runs as it would without it.
ENTRYPOINT ["apm-run"]
CMD ["python", "app.py"]
