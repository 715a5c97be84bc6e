#!/usr/bin/env bash
# An AKS GPU node pool for catalytic that scales from zero. AKS's own driver install is skipped
# (--gpu-driver None) so that the GPU Operator (gpu-nodepool/operator/) installs the 580 driver CUDA 13 needs.
#
# Usage: RESOURCE_GROUP=my-rg CLUSTER=my-cluster VM_SIZE=Standard_NC4as_T4_v3 MAX_NODES=4 \
#        gpu-nodepool/aks/add-node-pool.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=SCRIPTDIR/../nodepool.env
. "$here/../nodepool.env"

: "${RESOURCE_GROUP:?set RESOURCE_GROUP}"
: "${CLUSTER:?set CLUSTER}"
VM_SIZE=${VM_SIZE:-Standard_NC4as_T4_v3}
MAX_NODES=${MAX_NODES:-4}
POOL=${POOL:-gpu}

az aks nodepool add \
  --resource-group "$RESOURCE_GROUP" \
  --cluster-name "$CLUSTER" \
  --name "$POOL" \
  --node-vm-size "$VM_SIZE" \
  --node-count 0 \
  --enable-cluster-autoscaler --min-count 0 --max-count "$MAX_NODES" \
  --labels "${GPU_POOL_LABEL_KEY}=${GPU_POOL_LABEL_VALUE}" \
  --node-taints "${GPU_TAINT_KEY}=${GPU_TAINT_VALUE}:${GPU_TAINT_EFFECT}" \
  --gpu-driver None
