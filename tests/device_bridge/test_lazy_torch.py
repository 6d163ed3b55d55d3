"""The bridge's command lines answer --help and argument errors before torch loads."""

import subprocess
import sys


def test_command_line_modules_import_without_torch():
    code = ("import sys, device_bridge.server, device_bridge.client, device_bridge.profiler; "
            "print(sorted(m for m in ('torch', 'torchvision') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"


def test_model_names_match_the_builders():
    from device_bridge.graph_split import MODEL_BUILDERS
    from device_bridge.model_names import SUPPORTED_MODELS

    assert tuple(MODEL_BUILDERS) == SUPPORTED_MODELS
