"""Flow matching for DiMSUM: probability paths, training loss and ODE samplers.

Time convention (official DiMSUM / SiT): ``t = 0`` is noise, ``t = 1`` is data.
"""

from .paths import (
    PATHS,
    TIME_SAMPLINGS,
    expand_t_like_x,
    flow_matching_loss,
    interpolate,
    path_coefficients,
    predict_x1,
    sample_time,
    target_velocity,
)
from .sampler import (
    MAX_STEPS,
    METHODS,
    SCHEDULES,
    NonFiniteError,
    StepRecord,
    StopSampling,
    Trajectory,
    sample_ode,
    time_grid,
)

__all__ = [
    "PATHS",
    "TIME_SAMPLINGS",
    "METHODS",
    "MAX_STEPS",
    "expand_t_like_x",
    "path_coefficients",
    "interpolate",
    "target_velocity",
    "predict_x1",
    "sample_time",
    "flow_matching_loss",
    "SCHEDULES",
    "time_grid",
    "sample_ode",
    "Trajectory",
    "StepRecord",
    "StopSampling",
    "NonFiniteError",
]
