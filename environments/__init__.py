"""Tasks: dm_control environments with named information sets.

Tasks know nothing of agents. Each task is registered in `environments.registry` with the
observation keys it emits grouped into named *information sets*; a config hands a tuple of
set names to the prior, and the policy sees every key.
"""

import os

# No display on these machines and no rendering is needed for training: stop dm_control
# from probing GLFW/EGL at import time.
os.environ.setdefault("MUJOCO_GL", "disable")
