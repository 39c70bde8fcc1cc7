# syntax=docker/dockerfile:1
# The memload kit in one image: the reference API (`memload api`), the outbox worker (`memload worker`), migrations,
# the seeder, and Locust (master and workers). docker-compose.yml runs every service of the stack from it.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MEMLOAD_HOME=/data/memload

WORKDIR /app

# Dependencies first, so editing the kit's code does not reinstall them (every pin ships a manylinux wheel).
COPY requirements.txt ./
RUN pip install -r requirements.txt

COPY pyproject.toml README.md ./
COPY memload ./memload
COPY memory_api ./memory_api
COPY seeding ./seeding
COPY locustfiles ./locustfiles
COPY analysis ./analysis
COPY scripts ./scripts
COPY sql ./sql
COPY docs ./docs
RUN pip install --no-deps -e .

# Run unprivileged; /data holds MEMLOAD_HOME (query sets, artifacts) and is a shared volume in compose.
RUN useradd --create-home --uid 10001 memload \
    && mkdir -p /data/memload /app/artifacts \
    && chown -R memload:memload /data /app/artifacts
USER memload

# API, Locust web UI, Locust master <-> worker.
EXPOSE 3001 8089 5557

CMD ["memload", "--help"]
