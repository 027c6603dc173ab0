# syntax=docker/dockerfile:1
# Turnstile container image: `docker build -t turnstile:0.1.0 .` (see docs/deploy.md).
# Two stages: the builder installs the runtime dependencies into a virtualenv at the exact
# versions the tests ran with (constraints.txt, the same file scripts/test.sh installs with),
# then the project itself; the final image gets only that virtualenv and pipelines.toml.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# The dependency layer: only the lock and the list of dependencies go in, so this layer is
# reused while only code changes. setup.cfg's install_requires names them; constraints.txt
# pins each one (and every package they pull in) to the tested version.
COPY constraints.txt setup.cfg ./
RUN pip install --upgrade pip wheel \
 && python -c 'import configparser; c = configparser.ConfigParser(); c.read("setup.cfg"); print(c["options"]["install_requires"])' > requirements.txt \
 && pip install -c constraints.txt -r requirements.txt
# The code, on top: a wheel of the project alone (its dependencies are already there).
COPY pyproject.toml README* ./
COPY app ./app
COPY plugins ./plugins
RUN pip wheel --no-deps --wheel-dir /wheels . \
 && pip install --no-deps /wheels/*.whl \
 && pip check

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN groupadd --system --gid 10001 turnstile \
 && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home \
      --shell /usr/sbin/nologin turnstile
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
# The default pipelines; Kubernetes mounts its own at /etc/turnstile (PIPELINES_FILE).
COPY pipelines.toml ./pipelines.toml
# ./var holds the outbox file, events.jsonl and any embedded SQLite: the only writable path.
RUN mkdir -p /app/var && chown 10001:10001 /app/var
USER 10001:10001
EXPOSE 8080
CMD ["turnstile", "serve"]
