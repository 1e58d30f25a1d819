# ez-distill for NVIDIA GPUs (RTX 3090 class). torch==2.13.0 from PyPI brings its own CUDA 13 libraries; the CUDA
# runtime base image supplies the driver integration (host driver >= 580 for CUDA 13).
#   docker build -t ez-distill .
#   docker run --gpus all -v "$PWD/runs:/app/runs" -v "$PWD/results:/app/results" ez-distill \
#       python 01_pretrain_teacher.py --env-id Breakout
FROM nvidia/cuda:13.0.0-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MPLBACKEND=Agg \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# Ubuntu 24.04's Python is 3.12; libgl is not needed (opencv-python-headless).
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*

# Dependencies in their own layer, before the code: editing a script does not reinstall torch.
COPY requirements.txt /tmp/requirements.txt
RUN python3 -m venv /opt/venv \
    && pip install -r /tmp/requirements.txt

RUN useradd --create-home --uid 1000 ez
WORKDIR /app
COPY --chown=ez:ez . /app
# runs/ (checkpoints, TensorBoard) and results/ (reports) are meant to be mounted from the host.
RUN mkdir -p /app/runs /app/results && chown ez:ez /app/runs /app/results
# the user 'ez' created above, by number so that the host can resolve it
USER 1000:1000
VOLUME ["/app/runs", "/app/results"]

CMD ["python", "01_pretrain_teacher.py", "--help"]
