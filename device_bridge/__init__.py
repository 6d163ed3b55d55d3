"""Real DNN profiles and live device-to-server offloading (see docs/device_bridge.md).

``graph_split`` (torch.fx cut points and prefix/suffix execution), ``profiler``
(``python -m device_bridge.profiler``), ``protocol`` (framed binary wire format, mutual
handshake, per-frame HMAC tags), ``tls`` (optional TLS, pinned server certificate),
``server`` / ``client`` (``python -m device_bridge.server|client``), ``link`` (one client
connection), ``shaping`` (token-bucket uplink) and ``netem`` (kernel-shaped veth path).
"""
