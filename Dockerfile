FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 GATEWAY_VAR_DIR=/app/var
WORKDIR /app
# The lock first, in a layer of its own: every package at its pinned version and hash.
COPY requirements.txt ./
RUN pip install --no-cache-dir --require-hashes -r requirements.txt
COPY pyproject.toml README.md ./
COPY gateway gateway
COPY jobs jobs
COPY providers providers
COPY manage.py ./
RUN pip install --no-cache-dir --no-deps . && pip check && useradd --create-home gateway \
    && mkdir -m 700 -p var var/metrics \
    && chown gateway var var/metrics
USER gateway
EXPOSE 8000
# The web process; docker-compose.yml runs the worker, beat and migrations from this image too.
CMD ["granian", "--interface", "wsgi", "gateway.wsgi:application", "--host", "0.0.0.0", \
     "--port", "8000", "--workers", "2", "--blocking-threads", "12", "--no-ws", \
     "--respawn-failed-workers", "--workers-kill-timeout", "30"]
