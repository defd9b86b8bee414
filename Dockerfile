# The rollback-watchdog daemon. Build from the repository root:
#   docker build -t rollback-watchdog .
#   docker run -v "$PWD/my-config:/etc/watchdog:ro" -v watchdog-state:/var/lib/watchdog \
#              -p 8080:8080 --env-file deploy/.env rollback-watchdog
# Config: /etc/watchdog/watchdog.yaml. Everything it writes (a SQLite state.db, incidents/, the
# git provider's clone) goes under /var/lib/watchdog, the working directory. See deploy/README.md.
ARG PYTHON=python:3.11-slim-bookworm

FROM ${PYTHON} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY watchdog ./watchdog
# A venv without pip: the base image's pip installs into it, so none ships in the runtime.
RUN python -m venv --without-pip /opt/rollback-watchdog \
 && pip --python /opt/rollback-watchdog/bin/python install .

FROM ${PYTHON}
# git: the git rollback provider runs it.
RUN apt-get update \
 && apt-get install -y --no-install-recommends git \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 watchdog \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/watchdog --no-create-home \
            --shell /usr/sbin/nologin watchdog \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/watchdog \
 && install -d -m 0755 /etc/watchdog
COPY --from=builder /opt/rollback-watchdog /opt/rollback-watchdog
# The default rules, outside the config volume so mounting a config keeps them; a config points
# here with `rules: /usr/share/watchdog/rules.yaml`, or at its own file.
COPY config/rules.yaml /usr/share/watchdog/rules.yaml
ENV PATH=/opt/rollback-watchdog/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/var/lib/watchdog \
    WATCHDOG_CONFIG=/etc/watchdog/watchdog.yaml \
    WATCHDOG_API__LISTEN=0.0.0.0:8080
USER 10001:10001
WORKDIR /var/lib/watchdog
VOLUME ["/etc/watchdog", "/var/lib/watchdog"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request as r; r.urlopen('http://127.0.0.1:' + os.environ['WATCHDOG_API__LISTEN'].rpartition(':')[2] + '/healthz', timeout=4)"]
ENTRYPOINT ["watchdog"]
CMD ["run", "--config", "/etc/watchdog/watchdog.yaml"]
