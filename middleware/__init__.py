"""tuneloop's in-bot part: consent, anonymization and capture, inside the bot's handler chain."""

from .config import Config, ConfigError, load_config, load_env
from .training import TrainingCapture

__all__ = ["Config", "ConfigError", "TrainingCapture", "load_config", "load_env"]
