# chatweb images. Web (daphne):   docker build --target web .
#                 GPU worker:     docker build --target worker-gpu .
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
RUN useradd --create-home --uid 1000 chatweb

FROM base AS web
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
RUN DEBUG=true STATIC_MANIFEST=true python manage.py collectstatic --noinput -v 0
USER chatweb
EXPOSE 8000
CMD ["sh", "-c", "python manage.py migrate --noinput && daphne -b 0.0.0.0 -p 8000 chatweb.asgi:application"]

FROM base AS worker-gpu
COPY requirements.txt requirements-gpu.txt ./
RUN pip install --no-cache-dir -r requirements-gpu.txt
COPY . .
USER chatweb
# The model is given by the service (see docker-compose.yml).
ENTRYPOINT ["python", "manage.py", "run_worker"]
