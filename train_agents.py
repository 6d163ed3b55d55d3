"""pipesched command line: ``train``, ``evaluate``, ``compare``; no arguments runs the demo.

    python train_agents.py                                  # demo (make run)
    python train_agents.py train --env pipesched/DnnOffload-v0 --timesteps 200000 --n-envs 2
    python train_agents.py evaluate --env pipesched/DnnOffload-v0 --model runs/.../model.zip
    python train_agents.py compare --model agent=models/offload_agent.zip --instances 50
"""

from agents.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
