#!/usr/bin/env bash
# An EKS managed node group of GPU nodes for catalytic that scales from zero (eksctl). The cluster-autoscaler
# needs the node-template tags to scale a group up from zero nodes: they tell it the label, taint and GPU count
# a new node will have. The NVIDIA driver comes from the GPU Operator (gpu-nodepool/operator/, version in
# nodepool.env), so the nodes use the plain Amazon Linux 2023 image.
#
# Usage: CLUSTER=my-cluster REGION=eu-west-1 INSTANCE_TYPE=g6.2xlarge MAX_NODES=4 gpu-nodepool/eks/create-node-group.sh
# Set DRY_RUN=1 to print the ClusterConfig instead of creating the group.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=SCRIPTDIR/../nodepool.env
. "$here/../nodepool.env"

: "${CLUSTER:?set CLUSTER}"
: "${REGION:?set REGION}"
INSTANCE_TYPE=${INSTANCE_TYPE:-g6.2xlarge}
MAX_NODES=${MAX_NODES:-4}
GROUP=${GROUP:-catalytic-gpu}
template="k8s.io/cluster-autoscaler/node-template"

config=$(cat <<YAML
apiVersion: eksctl.io/v1alpha5
kind: ClusterConfig
metadata:
  name: ${CLUSTER}
  region: ${REGION}
managedNodeGroups:
  - name: ${GROUP}
    instanceType: ${INSTANCE_TYPE}
    amiFamily: AmazonLinux2023
    minSize: 0
    desiredCapacity: 0
    maxSize: ${MAX_NODES}
    volumeSize: 100
    labels:
      ${GPU_POOL_LABEL_KEY}: ${GPU_POOL_LABEL_VALUE}
    taints:
      - key: ${GPU_TAINT_KEY}
        value: ${GPU_TAINT_VALUE}
        effect: ${GPU_TAINT_EFFECT}
    tags:
      k8s.io/cluster-autoscaler/enabled: "true"
      k8s.io/cluster-autoscaler/${CLUSTER}: owned
      ${template}/label/${GPU_POOL_LABEL_KEY}: ${GPU_POOL_LABEL_VALUE}
      ${template}/taint/${GPU_TAINT_KEY}: ${GPU_TAINT_VALUE}:${GPU_TAINT_EFFECT}
      ${template}/resources/nvidia.com/gpu: "1"
YAML
)
if [ "${DRY_RUN:-0}" = 1 ]; then
  printf '%s\n' "$config"
else
  printf '%s\n' "$config" | eksctl create nodegroup -f -
fi
