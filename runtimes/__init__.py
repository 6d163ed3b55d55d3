"""Real-run runtimes: a parameter server and a heterogeneous pipeline on kernel-level emulation.

``python -m runtimes.ps`` and ``python -m runtimes.pipeline`` run one process per machine /
device, each in its own network namespace (veth to a shared bridge, ``tc tbf`` on its link)
and its own cpu cgroup (CPU quota = device speed); torch.distributed (gloo) carries the real
traffic and the bytes come from the interfaces' counters. See docs/param_server.md and
docs/hetero_pipeline.md.
"""
