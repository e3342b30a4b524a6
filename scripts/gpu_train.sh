#!/usr/bin/env bash
# Train the regression model on a lent GPU machine from the pack of scripts/gpu_pack.py, in one call of the device
# tool: command "bash scripts/gpu_train.sh", carry ["runs/gpu_pack"], timeout_s 600. That machine has PyTorch,
# NumPy, OpenCV, safetensors and typer; the encoder's architecture package travels in the pack as a wheel.
# Environment: CONFIG (configs/regression_gpu.toml), MINUTES of training before it pauses (7), RUN (runs/gpu_run).
# What comes back under $OUT: the EMA weights (model.safetensors, or model_step<N>.safetensors when the time ran
# out first), train.log, metrics.jsonl, gpu.txt. The checkpoint (about 60 MB) stays there: a run cannot go on
# from it in a later call, but its weights can be the next run's train.init.
set -euo pipefail
CONFIG=${CONFIG:-configs/regression_gpu.toml}
MINUTES=${MINUTES:-7}
RUN=${RUN:-runs/gpu_run}
PACK=$(python3 -c "import tomllib,sys; print(tomllib.load(open(sys.argv[1],'rb'))['data']['pack'])" "$CONFIG")
DEST=${OUT:-runs/gpu_out}
mkdir -p "$DEST"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/chromaflow-site \
    "$PACK"/wheels/*.whl
export PYTHONPATH=/tmp/chromaflow-site:$PWD PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; } | tee "$DEST/gpu.txt"
rc=0
python3 -m chromaflow.cli train "$RUN" --config "$CONFIG" --max-minutes "$MINUTES" || rc=$?
for f in "$RUN"/model.safetensors "$RUN"/model_step*.safetensors "$RUN"/train.log "$RUN"/metrics.jsonl; do
    [ -f "$f" ] && cp "$f" "$DEST/"
done
ls -la "$DEST"
exit $rc
