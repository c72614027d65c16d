# The app under gunicorn (gunicorn.conf.py), static files served by whitenoise.
# With USE_MINIO=true no file lives in the container, so any number of identical
# replicas can run behind a load balancer (docker-compose.yml, docs/DEPLOYMENT.md).
#
#   docker build -t crypto-exchange .
#   docker run --env-file .env -p 127.0.0.1:8000:8000 crypto-exchange

# --- builder: wheels, then a virtual environment made from them only ----------
FROM python:3.12.12-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /build
COPY requirements.txt .
# Every pinned requirement has a manylinux wheel for CPython 3.12, so this
# stage needs no compiler; the venv is installed from /wheels alone.
RUN pip wheel --no-cache-dir --wheel-dir /wheels -r requirements.txt \
    && python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --no-index --find-links /wheels \
        -r requirements.txt

# --- runtime ------------------------------------------------------------------
FROM python:3.12.12-slim-bookworm

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DEBUG=false \
    PORT=8000

RUN groupadd --gid 10001 app \
    && useradd --uid 10001 --gid 10001 --no-log-init --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin app

COPY --from=builder /opt/venv /opt/venv

WORKDIR /app
COPY . .

# collectstatic needs settings, not secrets: the key below is a placeholder set
# for this one command (no ENV, no file), and every container gets its real
# SECRET_KEY at run time. media/ and private_media/ (identity documents) are
# the app user's, so volumes mounted there are writable with USE_MINIO=false;
# so is the image decode slots' folder, which docker-compose.yml mounts as one
# volume in every app container of a host (a new volume takes its owner).
RUN SECRET_KEY=build-only-collectstatic-not-a-secret DEBUG=false USE_MINIO=false \
        python manage.py collectstatic --noinput --verbosity 0 \
    && mkdir -p media private_media /var/lib/crypto-exchange/image-decodes \
    && chown -R 10001:10001 media private_media /var/lib/crypto-exchange

USER 10001:10001
EXPOSE 8000

# Liveness only (/healthz/ touches no dependency). The Host header is the first
# ALLOWED_HOSTS entry so that Django accepts the request whatever hosts are
# configured; X-Forwarded-Proto keeps SECURE_SSL_REDIRECT from redirecting it.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; h = os.environ.get('ALLOWED_HOSTS', '').split(',')[0].strip().lstrip('.'); h = 'localhost' if h in ('', '*') else h; u.urlopen(u.Request('http://127.0.0.1:%s/healthz/' % os.environ.get('PORT', '8000'), headers={'Host': h, 'X-Forwarded-Proto': 'https'}), timeout=4)"]

CMD ["gunicorn", "--config", "gunicorn.conf.py", "crypto_exchange.wsgi:application"]
