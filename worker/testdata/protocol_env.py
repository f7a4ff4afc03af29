"""Reports what the run protocol gave it, as metrics: the config file's "lr",
the job id, the attempt, the resume step and CUDA_VISIBLE_DEVICES."""
import json
import os

with open(os.environ["ABLATE_CONFIG"]) as f:
    config = json.load(f)
line = {
    "step": 0,
    "lr": config["lr"],
    "job": int(os.environ["ABLATE_JOB_ID"]),
    "attempt": int(os.environ["ABLATE_ATTEMPT"]),
    "resume": int(os.environ["ABLATE_RESUME_STEP"]),
    "gpu": int(os.environ["CUDA_VISIBLE_DEVICES"]),
    "cwd_is_program_dir": float(os.path.exists("protocol_env.py")),
}
with os.fdopen(int(os.environ["ABLATE_METRICS_FD"]), "w") as metrics:
    metrics.write(json.dumps(line) + "\n")
