# syntax=docker/dockerfile:1
# The scheduler image: `docker build --target scheduler -t lasched .`
# Build tools stay in the first stage; the final image holds only a virtualenv.
ARG PYTHON_IMAGE=python:3.12.8-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY protocol/ protocol/
COPY pyproject.toml README.md ./
COPY lasched/ lasched/
RUN python -m venv /opt/lasched \
 && /opt/lasched/bin/pip install ./protocol .

FROM ${PYTHON_IMAGE} AS scheduler
COPY --from=build /opt/lasched /opt/lasched
ENV PATH=/opt/lasched/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER 65532:65532
EXPOSE 10271
ENTRYPOINT ["lasched", "run"]
