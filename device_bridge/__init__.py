"""Real DNN profiles and live device-to-server offloading (see docs/device_bridge.md).

``graph_split`` (torch.fx cut points and prefix/suffix execution), ``profiler``
(``python -m device_bridge.profiler``), ``protocol`` (framed binary wire format, HMAC
handshake), ``server`` / ``client`` (``python -m device_bridge.server|client``), ``shaping``
(token-bucket uplink) and ``netem`` (kernel-shaped veth path).
"""
