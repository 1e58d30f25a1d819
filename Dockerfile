# ez-distill for NVIDIA GPUs (RTX 3090 class); docs/docker.md has the driver table and the run commands.
#   docker build -t ez-distill .                                   # torch 2.13.0 from PyPI: CUDA 13.0, driver >= 580
#   docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 -t ez-distill .   # driver >= 560
# Needs BuildKit (the default builder since Docker 23; older Docker: DOCKER_BUILDKIT=1).
#
# Why no nvidia/cuda base image: the torch wheel brings its own CUDA user-space libraries (the nvidia-* pip
# packages: cuBLAS, cuDNN, NCCL, ...), and the NVIDIA container toolkit mounts the host driver (libcuda) into any
# container started with --gpus. A CUDA runtime image would only add a second, unused copy of the CUDA libraries.
# Any Debian or Ubuntu image with Python >= 3.11 in apt works as the base (e.g. ubuntu:24.04: Python 3.12).
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

# The two variables the CUDA images set for the NVIDIA container toolkit: all GPUs (narrowed by --gpus) and the
# driver parts that CUDA compute and nvidia-smi need.
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MPLBACKEND=Agg \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Debian's Python (3.11 on bookworm); libgl is not needed (opencv-python-headless). Distribution packages are left
# unpinned on purpose: the base image's release fixes their versions, and pins would break with each security update.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*

# Dependencies in their own layer, before the code: editing a script does not reinstall torch.
# Behind a TLS-intercepting proxy, pass a CA bundle that includes the proxy's certificate as the build secret
# `pipcert` (docker build --secret id=pipcert,src=/etc/ssl/certs/ca-certificates.crt ...). The secret is mounted for
# this RUN only: it is not written to any layer, and the build works without it.
COPY requirements.txt /tmp/requirements.txt
# Where torch comes from. Empty: PyPI's build (CUDA 13.0). A PyTorch index such as
# https://download.pytorch.org/whl/cu126 gives the version pinned in requirements.txt, built for that CUDA; the
# other pins then install from PyPI as usual (the local torch 2.13.0+cu126 satisfies torch==2.13.0).
ARG TORCH_INDEX_URL=""
RUN --mount=type=secret,id=pipcert \
    if [ -f /run/secrets/pipcert ]; then export PIP_CERT=/run/secrets/pipcert; fi \
    && python3 -m venv /opt/venv \
    && if [ -n "${TORCH_INDEX_URL}" ]; then \
        torch_pin="$(sed -n 's/^\(torch==[^ #]*\).*/\1/p' /tmp/requirements.txt)" \
        && pip install --index-url "${TORCH_INDEX_URL}" "${torch_pin:?requirements.txt pins no torch==}"; \
    fi \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

RUN useradd --create-home --uid 1000 ez
WORKDIR /app
COPY --chown=ez:ez . /app
# .git stays out of the image: the commit the reports and the sweep's records name comes from here instead
# (docker build --build-arg GIT_COMMIT="$(git rev-parse HEAD)" ...; make docker-smoke passes it).
ARG GIT_COMMIT=""
ENV EZ_DISTILL_COMMIT=${GIT_COMMIT}
# runs/ (checkpoints, TensorBoard) and results/ (reports) are meant to be mounted from the host.
RUN mkdir -p /app/runs /app/results && chown ez:ez /app/runs /app/results
# the user 'ez' created above, by number so that the host can resolve it
USER 1000:1000
VOLUME ["/app/runs", "/app/results"]

CMD ["python", "01_pretrain_teacher.py", "--help"]
