# The project image: the `skyscript` toolkit with Prefect and Dask, installed from pyproject.toml
# exactly as the README installs it (`pip install` of this folder; no second dependency list).
# Used by every project service of docker-compose.yml: Prefect server, worker, Dask scheduler/workers.
#
#   docker build -t skyscript-toolkit .
FROM python:3.11-slim

# curl: health checks; libexpat1/libgomp1: rasterio's and torch's wheels load them at run time.
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl libexpat1 libgomp1 \
 && rm -rf /var/lib/apt/lists/*

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    DO_NOT_TRACK=1 \
    HF_HUB_OFFLINE=1 \
    NO_GCE_CHECK=true \
    SKYSCRIPT_CACHE=/cache

WORKDIR /app
# Dependency spec first, so code edits do not reinstall torch.
COPY pyproject.toml README.md Makefile ./
COPY pipeline ./pipeline
COPY tag_classifier ./tag_classifier
COPY captioning ./captioning
COPY storage ./storage
COPY flows ./flows
COPY training ./training
COPY prefect.yaml ./
RUN python -m pip install --upgrade pip \
 && python -m pip install .

RUN useradd --create-home --uid 1000 skyscript \
 && mkdir -p /cache /data \
 && chown -R skyscript /cache /data /app
USER skyscript
VOLUME ["/cache", "/data"]

CMD ["skyscript", "--help"]
