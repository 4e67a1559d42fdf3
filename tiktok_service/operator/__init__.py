"""The Livestream operator: one connector pod per Livestream, status from the connector.

Layers (each only imports those above it):

* `config`, `model` -- settings and vocabulary (pure);
* `desired`, `lifecycle`, `status` -- decisions: the pod, the phase and action, the status (pure);
* `k8s`, `store` -- the only I/O: Kubernetes API, Redis reads, livestreams rows;
* `reconciler` -- one observe/decide/act loop per Livestream;
* `handlers`, `main` -- kopf wiring and the entry point (`tiktok-service operator`).
"""
