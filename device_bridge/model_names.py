"""The torchvision models the bridge can split, by name: torch-free, so that a command line
checks its arguments before torch loads (``graph_split.MODEL_BUILDERS`` builds them)."""

SUPPORTED_MODELS = ("alexnet", "vgg16", "resnet18", "resnet50", "mobilenet_v2", "googlenet",
                    "inception_v3")
