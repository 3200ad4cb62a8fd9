# syntax=docker/dockerfile:1
# Two images from one file:
#   docker build --target scheduler -t lasched:0.1.0 .
#   docker build --target agent -t lasched-agent:0.1.0 .
# pip and the sources stay in the build stages; each final image is the base
# plus one virtualenv without pip, run as UID/GID 65532. The agent image holds
# lasched-protocol and lasched-agent only (aioping, which it uses, is GPL-2.0
# and never enters the scheduler's image).
# The base is pinned by tag; pin it by digest too where you build
# (--build-arg PYTHON_IMAGE=python:3.12.8-slim-bookworm@sha256:...).
ARG PYTHON_IMAGE=python:3.12.8-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY protocol/ protocol/

FROM build AS build-scheduler
COPY pyproject.toml README.md ./
COPY lasched/ lasched/
RUN python -m venv --without-pip /opt/lasched \
 && pip --python /opt/lasched/bin/python install ./protocol .

FROM build AS build-agent
COPY agent/ agent/
RUN python -m venv --without-pip /opt/lasched-agent \
 && pip --python /opt/lasched-agent/bin/python install ./protocol ./agent

FROM ${PYTHON_IMAGE} AS agent
COPY --from=build-agent /opt/lasched-agent /opt/lasched-agent
ENV PATH=/opt/lasched-agent/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# Non-root: ICMP goes through datagram "ping sockets", which need only the
# group to be within net.ipv4.ping_group_range (the chart sets it per pod).
USER 65532:65532
ENTRYPOINT ["lasched-agent"]

# Last, so that a plain `docker build .` gives the scheduler.
FROM ${PYTHON_IMAGE} AS scheduler
COPY --from=build-scheduler /opt/lasched /opt/lasched
ENV PATH=/opt/lasched/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER 65532:65532
EXPOSE 10271
ENTRYPOINT ["lasched", "run"]
