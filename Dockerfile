# Kamidrop production image: gunicorn serves shop.project.wsgi as the non-root user
# `kamidrop`; the same image runs the RQ worker and the migrations (see
# docker-compose.yml). Configuration comes from the environment (.env.example).
#
#   docker build -t kamidrop .
#
# One stage is enough: every dependency ships a wheel (psycopg[binary],
# cryptography, ...), so no compiler or header is ever installed.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONPATH=/app \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DEBUG=0

# A fixed UID/GID (10001), so volumes, Kubernetes' runAsUser and host bind
# mounts can name the owner without looking inside the image.
RUN groupadd --system --gid 10001 kamidrop \
 && useradd --system --uid 10001 --gid kamidrop --home-dir /app --no-create-home --shell /usr/sbin/nologin kamidrop

WORKDIR /app

# The dependencies declared in pyproject.toml (and its `mysql` extra, which
# `manage.py import_from … --mysql` needs), in a layer of their own that is
# rebuilt only when pyproject.toml changes. The project itself runs from the
# source tree in /app (templates/ and manage.py are not in any package, and
# BASE_DIR must be /app), so it is not installed a second time into
# site-packages.
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['mysql']))" > /tmp/requirements.txt \
 && pip install --no-cache-dir -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

COPY . .

# Static files are collected into the image (WhiteNoise serves them). Settings
# must import for that, and with DEBUG off they refuse to without secrets, and
# with DATABASE_URL / REDIS_URL unset they would start an embedded PostgreSQL:
# throwaway values, for this one command only (collectstatic connects to
# neither server, and nothing here ends up in the image).
RUN DATABASE_URL=postgres://build@127.0.0.1:1/build \
    REDIS_URL=redis://127.0.0.1:1/0 \
    SECRET_KEY=build-only \
    KEY_ENCRYPTION_KEYS="$(python -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())')" \
    KEY_FINGERPRINT_PEPPER=build-only \
    ALLOWED_HOSTS=build.invalid \
    SITE_URL=https://build.invalid \
    EMAIL_URL=smtp://build.invalid:25 \
    python manage.py collectstatic --noinput \
 && python -m compileall -q shop inventory payments delivery riskctl

# docker-compose.yml mounts the media-data volume here (MEDIA_ROOT): a new
# named volume takes this folder's owner, so the web, not root, can write the
# product images into it.
RUN mkdir -p /app/.data/media && chown -R kamidrop:kamidrop /app/.data

USER kamidrop

EXPOSE 8000

# /healthz answers 200 only when PostgreSQL and Redis answer. The Host header
# is the first of ALLOWED_HOSTS (Django refuses any other), and the request
# looks like one the TLS proxy forwarded, so that an HTTPS redirect never
# answers it instead.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; host = os.environ.get('ALLOWED_HOSTS', '').split(',')[0].strip().lstrip('.'); host = 'localhost' if host in ('', '*') else host; urllib.request.urlopen(urllib.request.Request('http://127.0.0.1:8000/healthz', headers={'Host': host, 'X-Forwarded-Proto': 'https'}), timeout=4)"]

# Shell form so that WEB_CONCURRENCY / WEB_THREADS expand; exec so that
# gunicorn is PID 1 and gets the SIGTERM of `docker stop`. gthread workers keep
# connections alive and overlap one request's database and Redis waits with
# another's work (a sync worker idles through them and closes every
# connection): bench/RESULTS.md, "notify endpoint".
CMD exec gunicorn shop.project.wsgi:application --bind 0.0.0.0:8000 --workers ${WEB_CONCURRENCY:-3} --worker-class gthread --threads ${WEB_THREADS:-4} --worker-tmp-dir /dev/shm --access-logfile - --logger-class shop.project.accesslog.RedactingLogger
