#!/usr/bin/env bash
# A GKE GPU node pool for catalytic that scales from zero. GKE installs and manages the NVIDIA driver itself
# (gpu-driver-version=latest is a 580+ branch on GKE 1.33 and later node images), so no RuntimeClass is needed:
# render k8s with gpu-nodepool/gke (the gpu overlay without runtimeClassName).
#
# Usage: CLUSTER=my-cluster LOCATION=europe-west4 ACCELERATOR=nvidia-l4 MACHINE_TYPE=g2-standard-8 \
#        MAX_NODES=4 gpu-nodepool/gke/create-node-pool.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=SCRIPTDIR/../nodepool.env
. "$here/../nodepool.env"

: "${CLUSTER:?set CLUSTER}"
: "${LOCATION:?set LOCATION (a region or zone)}"
ACCELERATOR=${ACCELERATOR:-nvidia-l4}
MACHINE_TYPE=${MACHINE_TYPE:-g2-standard-8}
MAX_NODES=${MAX_NODES:-4}
POOL=${POOL:-catalytic-gpu}

gcloud container node-pools create "$POOL" \
  --cluster "$CLUSTER" \
  --location "$LOCATION" \
  --machine-type "$MACHINE_TYPE" \
  --accelerator "type=${ACCELERATOR},count=1,gpu-driver-version=latest" \
  --node-labels "${GPU_POOL_LABEL_KEY}=${GPU_POOL_LABEL_VALUE}" \
  --node-taints "${GPU_TAINT_KEY}=${GPU_TAINT_VALUE}:${GPU_TAINT_EFFECT}" \
  --enable-autoscaling --num-nodes 0 --min-nodes 0 --max-nodes "$MAX_NODES" \
  --shielded-secure-boot
