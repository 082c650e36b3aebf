# syntax=docker/dockerfile:1
# The image for everything Python in docker-compose.yml: the four services (python -m services.<name>), the
# bootstrap job (python -m deploy.bootstrap) and the HTX sandbox (htx-sandbox). The command picks the role.
# It holds the runtime dependencies only. EXTRAS adds optional-dependency groups of pyproject.toml by name
# (comma-separated): docker-compose.yml builds the sandbox's image with EXTRAS=sandbox, its HTTP server. The
# `local` extra (Tansu and OpenBao binaries, for `make run`) and the `test` extra never go into an image.
# No secrets are baked in: Vault credentials arrive at run time on volumes (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HASH7_LOG_FORMAT=json \
    HASH7_RUN_DIR=/var/lib/hash7/run

# Fixed ids, so that docker-compose.yml can hand files to this user (INIT_TOKEN_OWNER in the vault-init service).
ARG APP_UID=10001
ARG APP_GID=10001
RUN groupadd --system --gid "${APP_GID}" hash7 \
    && useradd --system --uid "${APP_UID}" --gid hash7 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin hash7

WORKDIR /app

# Dependencies first, from pyproject.toml alone, so that a code change does not reinstall them: the runtime
# dependencies, plus those of the extras named in EXTRAS.
ARG EXTRAS=""
COPY pyproject.toml ./
RUN python -c "import os, tomllib; \
project = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
extras = [name for name in os.environ['EXTRAS'].split(',') if name]; \
print('\n'.join(project['dependencies'] + [r for name in extras for r in project['optional-dependencies'][name]]))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Then the project itself (a regular, non-editable install: console scripts htx-sandbox, hash7, ...).
# The source stays in /app, owned by root and read-only for the app user: the commands run from /app, so
# relative paths such as deploy/sandbox/demo-scenario.json resolve.
COPY . .
RUN pip install --no-deps . \
    && rm -rf build ./*.egg-info \
    && install -d -o hash7 -g hash7 -m 0700 /var/lib/hash7 /var/lib/hash7/run /var/lib/hash7/run/approle

USER ${APP_UID}:${APP_GID}

# docker-compose.yml always sets the command; this default only says what the image is for.
CMD ["python", "-c", "print('hash7 image: run python -m services.<intake|validator|vault_writer|whitelist>, python -m deploy.bootstrap or htx-sandbox')"]
