# The app under gunicorn, static files served by whitenoise; any number of
# identical containers can run behind a load balancer when USE_MINIO=true.
# (Production hardening — multi-stage build, health check, gunicorn.conf.py —
# is tracked separately.)
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DEBUG=false

WORKDIR /app

COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .

# Build-only values: collectstatic needs settings, not secrets.
RUN SECRET_KEY=collectstatic-build-only python manage.py collectstatic --noinput \
    && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin app

USER 10001
EXPOSE 8000
CMD ["gunicorn", "crypto_exchange.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-"]
