# chatweb images. Web (daphne):   docker build --target web .
#                 GPU worker:     docker build --target worker-gpu .
#                 Tool worker:    docker build --target tools .
#                 Knowledge:      docker build --target knowledge .
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
RUN useradd --create-home --uid 1000 chatweb \
 && install -d -m 0700 -o chatweb -g chatweb /var/lib/chatweb-uploads

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

FROM base AS tools
# The built-in python tool's calls, off the GPU workers (TOOLS_QUEUE): bubblewrap, and
# Debian's python for the sandbox (the image's own python lives under /usr/local, which
# the sandbox does not show). Each conversation's files live in SANDBOX_DIR, o+x so the
# sandbox's own user can pass through.
RUN apt-get update && apt-get install -y --no-install-recommends bubblewrap python3 \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -m 0711 -o chatweb -g chatweb /var/lib/chatweb-sandbox
ENV SANDBOX_DIR=/var/lib/chatweb-sandbox
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
USER chatweb
ENTRYPOINT ["python", "manage.py", "run_tool_worker"]

FROM base AS knowledge
# Uploaded files converted, chunked and embedded (KNOWLEDGE_QUEUE), off the GPU workers.
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
USER chatweb
ENTRYPOINT ["python", "manage.py", "run_knowledge_worker"]
