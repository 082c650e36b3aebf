# syntax=docker/dockerfile:1
# The image for everything Python in docker-compose.yml: the four services (python -m services.<name>), the
# bootstrap job (python -m deploy.bootstrap), the scheduled Vault snapshot (hash7-admin backup-every) and the HTX
# sandbox (htx-sandbox). The command picks the role.
# It holds the runtime dependencies only, exactly as requirements/runtime.lock pins them, hashes checked (`make lock`
# writes the locks from pyproject.toml; tests/deploy/test_lock_files.py fails when they disagree). LOCK picks another
# lock file of requirements/: docker-compose.yml builds the sandbox's image with LOCK=sandbox (the runtime
# dependencies plus the `sandbox` extra, its HTTP server). The `local` extra (Tansu and OpenBao binaries, for
# `make run`) and the `test` extra never go into an image.
# No secrets are baked in: credentials arrive at run time on volumes (see docker-compose.yml).
# The base image by digest (python:3.11-slim's multi-platform index): a rebuild gets the same Python and Debian.
# To take a newer one: `docker buildx imagetools inspect python:3.11-slim` and replace the digest.
FROM python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HASH7_LOG_FORMAT=json \
    HASH7_RUN_DIR=/var/lib/hash7/run

# Fixed ids, so that docker-compose.yml can hand files to this user (INIT_TOKEN_OWNER in the vault-init service,
# the group of the Kafka admin password in kafka-init).
ARG APP_UID=10001
ARG APP_GID=10001
RUN groupadd --system --gid "${APP_GID}" hash7 \
    && useradd --system --uid "${APP_UID}" --gid hash7 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin hash7

WORKDIR /app

# Dependencies first, from the lock files alone, so that a code change does not reinstall them. --require-hashes:
# every file pip downloads must have a hash the lock lists; --no-deps: nothing the lock does not name.
ARG LOCK=runtime
COPY requirements/${LOCK}.lock requirements/build.lock /tmp/requirements/
RUN pip install --require-hashes --no-deps -r /tmp/requirements/${LOCK}.lock -r /tmp/requirements/build.lock \
    && rm -r /tmp/requirements

# Then the project itself (a regular, non-editable install: console scripts htx-sandbox, hash7-admin, ...), built with
# the locked setuptools rather than whatever build isolation would fetch.
# The source stays in /app, owned by root and read-only for the app user: the commands run from /app, so
# relative paths such as deploy/sandbox/htx/demo-scenario.json resolve.
COPY . .
RUN pip install --no-deps --no-build-isolation . \
    && rm -rf build ./*.egg-info \
    && install -d -o hash7 -g hash7 -m 0700 /var/lib/hash7 /var/lib/hash7/run /var/lib/hash7/run/credentials \
        /var/lib/hash7/backups

USER ${APP_UID}:${APP_GID}

# docker-compose.yml always sets the command; this default only says what the image is for.
CMD ["python", "-c", "print('hash7 image: run python -m services.<intake|validator|vault_writer|whitelist>, python -m deploy.bootstrap or htx-sandbox')"]
