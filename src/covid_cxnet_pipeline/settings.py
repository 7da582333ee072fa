"""Project settings: Kedro reads this module when a session starts."""

from kedro.config import OmegaConfigLoader
from omegaconf.resolvers import oc

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # Each pipeline owns its own catalog_<pipeline>.yml and parameters_<pipeline>.yml.
    "config_patterns": {
        "catalog": ["catalog*", "catalog*/**", "**/catalog*"],
        "parameters": ["parameters*", "parameters*/**", "**/parameters*"],
        "mlflow": ["mlflow*", "mlflow*/**", "**/mlflow*"],
    },
    # conf/mirror and others override single keys of conf/base instead of whole top-level blocks.
    "merge_strategy": {"parameters": "soft"},
    # Environment variables in any config file, e.g. ${oc.env:CXR_MIRROR_URL,http://127.0.0.1:8000}
    "custom_resolvers": {"oc.env": oc.env},
}
