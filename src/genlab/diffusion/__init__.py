"""Diffusion building blocks that compose like diffusers': a noise schedule, a prediction parameterisation,
and samplers that only see a denoising function — none of them knows the network."""

from genlab.diffusion.samplers import SAMPLERS, sample_loop
from genlab.diffusion.schedule import NoiseSchedule, sampling_timesteps

__all__ = ["SAMPLERS", "NoiseSchedule", "sample_loop", "sampling_timesteps"]
